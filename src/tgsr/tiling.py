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

Coordinate channels (``position_code`` "coords..."): the generator appends x/y channels in
[-1, 1] over its input. With ``with_frame=True`` ``fn`` also receives each tile's place in the
whole input, which the pipeline passes on as the generator's ``coord_frame``: the tiles then get
the coordinates of the whole image, and the tiled output equals the untiled one as above.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from tgsr.models.factory import build_generator
from tgsr.models.generator import GeneratorBase

__all__ = [
    "TilePlan",
    "parse_memory",
    "activation_bytes",
    "check_tile_options",
    "peak_activation_bytes",
    "plan_tiles",
    "receptive_radius",
    "tile_starts",
    "tile_weights",
    "tiled_apply",
]


MIN_TILE = 4  # LR pixels: a smaller tile has no room for its overlap


def check_tile_options(
    tile: int | None, overlap: int | None, names: tuple[str, str] = ("tile", "overlap")
) -> None:
    """The rule for a requested tiling (None: chosen automatically): ``tile`` 0 (never tile) or
    at least :data:`MIN_TILE` LR pixels, ``0 < overlap < tile``. ValueError naming the options
    as ``names`` says (``("--tile", "--overlap")`` on the command line)."""
    t, o = names
    if tile is not None and tile != 0 and tile < MIN_TILE:
        raise ValueError(
            f"{t} must be at least {MIN_TILE} LR pixels (or 0: never tile), got {tile}"
        )
    if overlap is not None and overlap < 1:
        raise ValueError(f"{o} must be at least 1 LR pixel, got {overlap}")
    if tile and overlap is not None and overlap >= tile:
        raise ValueError(f"{o} must be smaller than {t}, got {o} {overlap} with {t} {tile}")


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


def _cores(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """Each tile's core ``[a, b)``: neighbouring cores meet in the middle of their overlap."""
    cores = []
    for i, s in enumerate(starts):
        a = 0 if i == 0 else (starts[i - 1] + size + s) // 2
        b = length if i == len(starts) - 1 else (s + size + starts[i + 1]) // 2
        cores.append((a, b))
    return cores


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]],
    lq: torch.Tensor,
    tile: int,
    overlap: int,
    scale: int,
    *,
    margin: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_tiles: int = 1,
    blend: bool = True,
    convert: Callable[[torch.Tensor], torch.Tensor] | None = None,
    with_frame: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Apply an SR function ``fn: (B,3,h,w) -> (B,C,h*scale,w*scale)`` tile by tile.

    Args:
        fn: the model call on LR tiles. It may also return a tuple of tensors, each at an
            integer factor of the tile size (e.g. ``(sr, attention_maps)``); the first must be at
            ``scale``. Every output is combined the same way.
        lq: ``(B, 3, H, W)`` input.
        tile: tile side in LR pixels (clipped to the image).
        overlap: overlap between neighbouring tiles in LR pixels.
        scale: the upscaling factor of ``fn`` (of its first output).
        margin: LR pixels at each inner tile edge that are never used; defaults to
            ``overlap // 4`` with ``blend`` and ``overlap // 2`` without.
        progress: called as ``progress(done, total)`` after each batch of tiles.
        batch_tiles: tiles per ``fn`` call, stacked along the batch (all tiles have one size).
        blend: True: raised-cosine blending of the overlaps (``overlap > 2 * margin``), the
            output accumulated in at least float32. False: every output pixel comes from the one
            tile whose core holds it (cores meet in the middle of each overlap,
            ``overlap >= 2 * margin``); exact when ``margin`` >= the receptive-field radius,
            and the tiles are written straight into an output of the pieces' dtype.
        convert: without ``blend``, applied to the first output's pieces before they are
            written (e.g. to uint8), so no float copy of the whole output is made.
        with_frame: call ``fn(tiles, frame)``, ``frame`` an int64 ``(N, 4)`` tensor on
            ``lq``'s device holding ``(y0, x0, H, W)`` of each batch row: where its tile lies in
            the whole ``H x W`` input (the generators' ``coord_frame``, so that coordinate
            channels are those of the whole image, not of the tile).

    Returns the output (or the tuple of outputs).
    """
    if lq.ndim != 4:
        raise ValueError(f"lq must be (B, 3, H, W), got shape {tuple(lq.shape)}")
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if batch_tiles < 1:
        raise ValueError(f"batch_tiles must be >= 1, got {batch_tiles}")
    b, _, h, w = lq.shape
    if margin is None:
        margin = overlap // 4 if blend else overlap // 2
    th, tw = min(tile, h), min(tile, w)
    for length, t in ((h, th), (w, tw)):
        if t < length and blend and overlap <= 2 * margin:
            raise ValueError(f"overlap ({overlap}) must exceed 2 * margin ({margin})")
        if t < length and not blend and overlap < 2 * margin:
            raise ValueError(f"overlap ({overlap}) must be at least 2 * margin ({margin})")
        if t < length and overlap >= t:
            raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({t})")
    ys = tile_starts(h, tile, overlap)
    xs = tile_starts(w, tile, overlap)
    cores = (_cores(ys, th, h), _cores(xs, tw, w))
    windows: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    outs: list[torch.Tensor] = []
    factors: list[int] = []
    is_tuple = False
    grid = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    total = len(grid)
    done = 0
    for first in range(0, total, batch_tiles):
        group = grid[first : first + batch_tiles]
        crops = [lq[:, :, ys[iy] : ys[iy] + th, xs[ix] : xs[ix] + tw] for iy, ix in group]
        batch = torch.cat(crops) if len(crops) > 1 else crops[0]
        if with_frame:  # tile-major rows, b per tile: (len(group) * b, 4)
            frame = torch.tensor([[ys[iy], xs[ix], h, w] for iy, ix in group], device=lq.device)
            pieces = fn(batch, frame.repeat_interleave(b, 0))
        else:
            pieces = fn(batch)
        is_tuple = isinstance(pieces, (tuple, list))
        pieces = tuple(pieces) if is_tuple else (pieces,)
        if not outs:
            for k, piece in enumerate(pieces):
                f = piece.shape[-1] // tw
                if f < 1 or piece.shape[-2:] != (th * f, tw * f) or (k == 0 and f != scale):
                    want = (
                        f"x{scale} = {(th * scale, tw * scale)}" if k == 0 else "an integer factor"
                    )
                    raise ValueError(
                        f"fn returned {tuple(piece.shape[-2:])} for a {th}x{tw} tile; "
                        f"expected {want}"
                    )
                factors.append(f)
                if blend:
                    dtype = torch.promote_types(piece.dtype, torch.float32)
                elif k == 0 and convert is not None:
                    dtype = convert(piece[:1, :, :1, :1]).dtype
                else:
                    dtype = piece.dtype
                shape = (b, piece.shape[1], h * f, w * f)
                outs.append(torch.zeros(shape, dtype=dtype, device=piece.device))
                if blend and f not in windows:
                    windows[f] = (
                        tile_weights(h, tile, overlap, f, margin)[1],
                        tile_weights(w, tile, overlap, f, margin)[1],
                    )
        for j, (iy, ix) in enumerate(group):
            y, x = ys[iy], xs[ix]
            for k, (piece, f, out) in enumerate(zip(pieces, factors, outs, strict=True)):
                part = piece[j * b : (j + 1) * b]
                if blend:
                    wy, wx = windows[f][0][iy], windows[f][1][ix]
                    weight = wy.to(out)[:, None] * wx.to(out)[None, :]  # (th*f, tw*f)
                    out[:, :, y * f : (y + th) * f, x * f : (x + tw) * f] += part.to(out) * weight
                    continue
                (ya, yb), (xa, xb) = cores[0][iy], cores[1][ix]
                part = part[:, :, (ya - y) * f : (yb - y) * f, (xa - x) * f : (xb - x) * f]
                if k == 0 and convert is not None:
                    part = convert(part)
                out[:, :, ya * f : yb * f, xa * f : xb * f] = part
        del pieces
        done += len(group)
        if progress is not None:
            progress(done, total)
    return tuple(outs) if is_tuple else outs[0]


# ----------------------------------------------------------------------------- planning


def _probe_inputs(generator, size: int, batch: int, device, dtype, word_dim: int):
    t = 4  # the number of words does not change the spatial footprint
    lq = torch.rand(batch, 3, size, size, device=device, dtype=dtype)
    words = torch.randn(batch, word_dim, t, device=device, dtype=dtype)
    sentence = torch.randn(batch, word_dim, device=device, dtype=dtype)
    mask = torch.zeros(batch, t, dtype=torch.bool, device=device)
    return lq, words, sentence, mask


_RADIUS_CACHE: dict[str, int] = {}


def _config_and_key(generator: torch.nn.Module, what: str):
    """(the generator's GeneratorConfig, a cache key of its layout)."""
    if not isinstance(generator, GeneratorBase):
        raise ValueError(f"{what} needs a tgsr generator (PaperGenerator / ReleasedGenerator)")
    key = json.dumps({"scale": generator.scale, **asdict(generator.config)}, sort_keys=True)
    return generator.config, key


def receptive_radius(generator: torch.nn.Module, max_size: int = 256) -> int:
    """The generator's receptive-field radius in LR pixels, computed (not guessed).

    A narrow twin of the generator (same config, 4 channels, LeakyReLU so that no path
    is cut by a dead unit; the field is a property of the layout, not of the width or weights)
    is run on a random input; the gradient of one central LR cell of the output with respect to
    the input is non-zero exactly on the input pixels that cell depends on. The largest distance
    from the centre is the radius: a tile crop with at least this margin equals the untiled
    output. Cached per config."""
    config, key = _config_and_key(generator, "receptive_radius")
    if key in _RADIUS_CACHE:
        return _RADIUS_CACHE[key]
    twin_cfg = replace(config, channels=4)
    if config.arch == "paper":  # the released layout has GLU blocks, no activation choice
        twin_cfg = replace(twin_cfg, activation="leaky_relu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        twin = build_generator(twin_cfg, 8, generator.scale)
        twin = twin.eval().requires_grad_(False)  # input gradients only
        scale = twin.scale
        size = 25
        while True:
            lq, words, sentence, mask = _probe_inputs(twin, size, 1, "cpu", torch.float32, 8)
            lq.requires_grad_(True)
            sr = twin(lq, words, sentence, mask).sr
            c = size // 2
            sr[..., c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
            hit = lq.grad.abs().sum(dim=(0, 1)) > 0  # (H, W)
            rows = torch.nonzero(hit.any(1)).flatten()
            cols = torch.nonzero(hit.any(0)).flatten()
            radius = int(max(c - rows.min(), rows.max() - c, c - cols.min(), cols.max() - c))
            if radius < c - 1 or size >= max_size:
                break
            size = 2 * size + 1
    _RADIUS_CACHE[key] = radius
    return radius


class _LiveBytes(torch.overrides.TorchFunctionMode):
    """Counts the bytes of the tensors alive during a forward pass, and their peak."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage -> [bytes, tensors holding it]
        self.now = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr() or id(t)
            if key not in self.live:
                self.live[key] = [storage.nbytes(), 0]
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self.live[key][1] += 1
            weakref.finalize(t, self._release, key)
        return out


_BYTES_CACHE: dict[str, tuple[float, float]] = {}


def activation_bytes(generator: torch.nn.Module) -> tuple[float, float]:
    """(a, b): an inference forward pass holds at most ``(a + b * channels) * itemsize / 4``
    bytes per output pixel at once.

    Computed, not guessed: float32 twins of the generator (same config) with 4 and 8 channels
    are run on a 4 x 4 input while every tensor a torch function returns is counted until it
    is freed; the peak is linear in the output pixels and in the width. Cached per config."""
    config, key = _config_and_key(generator, "activation_bytes")
    if key not in _BYTES_CACHE:
        size, peaks = 4, []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for width in (4, 8):
                twin = build_generator(replace(config, channels=width), 8, generator.scale)
                twin = twin.eval()
                args = _probe_inputs(twin, size, 1, "cpu", torch.float32, 8)
                counter = _LiveBytes()
                with torch.inference_mode(), counter:
                    out = twin(*args, sr_only=True)  # as inference runs it
                    del out
                peaks.append(counter.peak / (size * twin.scale) ** 2)
        b = (peaks[1] - peaks[0]) / 4
        _BYTES_CACHE[key] = (peaks[0] - 4 * b, b)
    return _BYTES_CACHE[key]


def peak_activation_bytes(
    generator: torch.nn.Module, lq_size: int, batch: int = 1, dtype: torch.dtype | None = None
) -> int:
    """Estimated peak bytes of one inference forward pass on ``batch`` square ``lq_size``
    inputs (:func:`activation_bytes`)."""
    if dtype is None:
        dtype = next(generator.parameters()).dtype
    a, b = activation_bytes(generator)
    itemsize = torch.empty((), dtype=dtype).element_size()
    per_pixel = (a + b * int(generator.config.channels)) * itemsize / 4
    return int(batch * (lq_size * generator.scale) ** 2 * per_pixel)


def parse_memory(text: str | int | float) -> int:
    """``"2GB"``, ``"512MiB"``, ``"1.5G"``, ``"3e9"`` or a number of bytes -> bytes."""
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise ValueError(f"cannot read a memory size from {text!r} (e.g. 2GB, 512MiB)")
    if isinstance(text, (int, float)):
        if text != text or text in (float("inf"), float("-inf")):
            raise ValueError(f"memory size must be a finite number, got {text!r}")
        value = int(text)
    else:
        units = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6,
                 "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12,
                 "tib": 2**40}  # fmt: skip
        raw = text.strip().lower().replace(" ", "")
        num = raw.rstrip("kmgtib")
        unit = raw[len(num) :]
        try:
            value = int(float(num) * units[unit])
        except (ValueError, KeyError, OverflowError):
            raise ValueError(
                f"cannot read a memory size from {text!r} (e.g. 2GB, 512MiB)"
            ) from None
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return value


@dataclass
class TilePlan:
    """How :func:`tiled_apply` should cut one input (``tile is None``: run it whole)."""

    tile: int | None
    overlap: int
    margin: int
    batch_tiles: int
    tiles: int
    tiled_pixels: int  # LR pixels the generator sees, overlaps included
    peak_bytes: int  # estimated activations of one call

    @property
    def overhead(self) -> float:
        """Generator work relative to an untiled run (1.0 = none)."""
        return self.tiled_pixels / max(1, self._pixels)

    _pixels: int = 1


def plan_tiles(
    h: int,
    w: int,
    radius: int,
    memory_of: Callable[[int, int], int],
    max_memory: int,
    *,
    batch: int = 1,
    min_tile: int = 8,
) -> TilePlan:
    """The cheapest tiling of an ``h x w`` LR input whose activations fit ``max_memory``.

    ``memory_of(tile, n)`` gives the peak bytes of one call on ``n`` square ``tile`` inputs.
    Tiles overlap by ``2 * radius`` (each crop keeps a ``radius`` margin: exact). For each tile
    count per axis the smallest tile that covers the image is tried, and the plan with the
    fewest generator pixels that fits is kept; tiles are then batched as far as memory allows.
    """
    pixels = h * w
    overlap = 2 * radius
    whole = memory_of(max(h, w), batch)
    if whole <= max_memory:
        return TilePlan(None, 0, 0, 1, 1, pixels, whole, _pixels=pixels)
    best = None
    longest = max(h, w)
    for n in range(2, longest + 1):
        tile = max(min_tile, overlap + 1, math.ceil((longest + (n - 1) * overlap) / n))
        if tile >= longest:
            continue
        mem = memory_of(tile, batch)
        if mem > max_memory:
            continue
        ny, nx = len(tile_starts(h, tile, overlap)), len(tile_starts(w, tile, overlap))
        work = ny * nx * min(tile, h) * min(tile, w)
        if best is None or work < best[0]:
            best = (work, tile, ny * nx, mem)
        if tile <= max(min_tile, overlap + 1):
            break
        if best is not None and work > 2 * best[0]:
            break  # ever more tiles only add overlap
    if best is None:
        tile = max(min_tile, overlap + 1)
        ny, nx = len(tile_starts(h, tile, overlap)), len(tile_starts(w, tile, overlap))
        best = (ny * nx * min(tile, h) * min(tile, w), tile, ny * nx, memory_of(tile, batch))
    work, tile, count, mem = best
    per_tile = max(1, mem)
    batch_tiles = max(1, min(count, max_memory // per_tile))
    if batch_tiles > 1:
        while batch_tiles > 1 and memory_of(tile, batch * batch_tiles) > max_memory:
            batch_tiles -= 1
    return TilePlan(tile, overlap, radius, batch_tiles, count, work, mem, _pixels=pixels)
