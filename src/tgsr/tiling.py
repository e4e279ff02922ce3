"""Tiled super-resolution for inputs of any size, with blended seams.

The generator is fully convolutional, so a large input can be processed as a grid of
overlapping LR tiles, one at a time, and the SR tiles accumulated into the output tensor.
Memory is bounded by the tile size (the activations of one tile) plus the output itself.

Seams: every tile gets a separable window ``w_y(y) * w_x(x)`` over its output pixels. Along an
edge that borders another tile the window is 0 for the outermost ``margin`` LR pixels (where the
tile's zero padding differs from the real neighbours), then rises with a raised-cosine ramp to
1 across the rest of the overlap; along an edge on the image border it is 1. The 1-D windows are
normalised per axis (the tiles form a grid, so the 2-D normaliser is the outer product of the 1-D
ones) and the weighted tiles are summed, so every output pixel is a convex combination of the
tiles covering it. When ``margin`` is at least the receptive-field radius of the model (in LR
pixels), every tile value with a non-zero weight equals the untiled value and the tiled output
equals the untiled one; otherwise the residual edge error is spread smoothly over the ramp.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["tile_starts", "tile_weights", "tiled_apply"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap``.

    The last tile is flush with the end (so it may overlap its neighbour by more).
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    return sorted(set(starts))


def _ramp(n: int, dtype: torch.dtype) -> torch.Tensor:
    """Raised-cosine ramp of ``n`` samples strictly between 0 and 1 (rising)."""
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return (0.5 - 0.5 * torch.cos(math.pi * x)).to(dtype)


def _window_1d(
    size: int,
    lead: tuple[int, int] | None,
    trail: tuple[int, int] | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Window over ``size`` output pixels.

    ``lead``/``trail`` = (margin, ramp) lengths at the start/end edge, or None on an image border.
    """
    w = torch.ones(size, dtype=dtype)
    if lead is not None:
        margin, ramp = lead
        w[:margin] = 0
        w[margin : margin + ramp] = _ramp(ramp, dtype)
    if trail is not None:
        margin, ramp = trail
        if margin:
            w[size - margin :] = 0
        w[size - margin - ramp : size - margin] = torch.minimum(
            w[size - margin - ramp : size - margin], _ramp(ramp, dtype).flip(0)
        )
    return w


def tile_weights(
    length: int, tile: int, overlap: int, scale: int, margin: int, dtype=torch.float32
) -> tuple[list[int], list[torch.Tensor]]:
    """Tile starts (LR) and their normalised 1-D output windows (each ``tile*scale`` long)."""
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    windows = []
    for i, s in enumerate(starts):
        lead = trail = None
        if i > 0:
            ov = starts[i - 1] + size - s  # actual overlap with the previous tile (LR px)
            lead = (margin * scale, (ov - 2 * margin) * scale)
        if i < len(starts) - 1:
            ov = s + size - starts[i + 1]
            trail = (margin * scale, (ov - 2 * margin) * scale)
        windows.append(_window_1d(size * scale, lead, trail, dtype))
    total = torch.zeros(length * scale, dtype=torch.float64)
    for s, w in zip(starts, windows, strict=True):
        total[s * scale : (s + size) * scale] += w.double()
    if bool((total <= 0).any()):  # cannot happen when overlap > 2 * margin
        raise ValueError("tile windows leave pixels uncovered; increase overlap")
    normed = []
    for s, w in zip(starts, windows, strict=True):
        normed.append((w.double() / total[s * scale : (s + size) * scale]).to(dtype))
    return starts, normed


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    lq: torch.Tensor,
    tile: int,
    overlap: int,
    scale: int,
    *,
    margin: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Apply an SR function ``fn: (B,3,h,w) -> (B,C,h*scale,w*scale)`` tile by tile.

    Args:
        fn: the model call on one LR tile. It may also return a tuple of tensors, each at an
            integer factor of the tile size (e.g. ``(sr, attention_maps)``); the first must be at
            ``scale``. Every output is blended the same way.
        lq: ``(B, 3, H, W)`` input.
        tile: tile side in LR pixels (clipped to the image).
        overlap: overlap between neighbouring tiles in LR pixels (``> 2 * margin``).
        scale: the upscaling factor of ``fn`` (of its first output).
        margin: LR pixels at each inner tile edge that get zero weight; defaults to
            ``overlap // 4`` (the ramp then spans the middle half of the overlap).
        progress: called as ``progress(done, total)`` after each tile.

    Returns the output (or the tuple of outputs), accumulated in at least float32.
    """
    if lq.ndim != 4:
        raise ValueError(f"lq must be (B, 3, H, W), got shape {tuple(lq.shape)}")
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    b, _, h, w = lq.shape
    if margin is None:
        margin = overlap // 4
    th, tw = min(tile, h), min(tile, w)
    for length, t in ((h, th), (w, tw)):
        if t < length and overlap <= 2 * margin:
            raise ValueError(f"overlap ({overlap}) must exceed 2 * margin ({margin})")
        if t < length and overlap >= t:
            raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({t})")
    ys = tile_starts(h, tile, overlap)
    xs = tile_starts(w, tile, overlap)
    windows: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    outs: list[torch.Tensor] = []
    factors: list[int] = []
    is_tuple = False
    total = len(ys) * len(xs)
    done = 0
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            pieces = fn(lq[:, :, y : y + th, x : x + tw])
            is_tuple = isinstance(pieces, (tuple, list))
            pieces = tuple(pieces) if is_tuple else (pieces,)
            if done == 0:
                for k, piece in enumerate(pieces):
                    f = piece.shape[-1] // tw
                    if f < 1 or piece.shape[-2:] != (th * f, tw * f) or (k == 0 and f != scale):
                        want = (
                            f"x{scale} = {(th * scale, tw * scale)}"
                            if k == 0
                            else "an integer factor"
                        )
                        raise ValueError(
                            f"fn returned {tuple(piece.shape[-2:])} for a {th}x{tw} tile; "
                            f"expected {want}"
                        )
                    factors.append(f)
                    dtype = torch.promote_types(piece.dtype, torch.float32)
                    shape = (b, piece.shape[1], h * f, w * f)
                    outs.append(torch.zeros(shape, dtype=dtype, device=piece.device))
                    if f not in windows:
                        windows[f] = (
                            tile_weights(h, tile, overlap, f, margin)[1],
                            tile_weights(w, tile, overlap, f, margin)[1],
                        )
            for piece, f, out in zip(pieces, factors, outs, strict=True):
                wy, wx = windows[f][0][iy], windows[f][1][ix]
                weight = wy.to(out)[:, None] * wx.to(out)[None, :]  # (th*f, tw*f)
                out[:, :, y * f : (y + th) * f, x * f : (x + tw) * f] += piece.to(out) * weight
            del pieces
            done += 1
            if progress is not None:
                progress(done, total)
    return tuple(outs) if is_tuple else outs[0]
