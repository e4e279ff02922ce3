"""Report figures: comparison grids, per-word attention maps, edit rows, training curves.

Image grids are drawn with PIL; attention maps and curves with matplotlib's object API on the
Agg canvas (no pyplot, no global backend change). Images are ``uint8 (H, W, 3)`` numpy arrays or
float tensors ``(3, H, W)`` in [0, 1]. Small images are zoomed by an integer factor with nearest
neighbour so that every cell is at least ``min_cell`` pixels (pixels stay visible, nothing is
interpolated); the LR input is nearest-upscaled to the cell size. Output is deterministic: the
same inputs give the same bytes (PNG metadata carries no date or version). Every figure is
written beside its name and renamed into place (:func:`tgsr.files.atomic_write`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from tgsr.files import atomic_write

__all__ = ["as_uint8", "attention_figure", "comparison_grid", "edit_rows", "training_curves"]

_PAD = 6
_BG = (255, 255, 255)
_FG = (20, 20, 20)
_MISSING = (235, 235, 235)


def as_uint8(img: np.ndarray | torch.Tensor) -> np.ndarray:
    """``uint8 (H, W, 3)`` from a uint8 array or a float ``(3, H, W)`` / ``(1, 3, H, W)`` tensor."""
    if torch.is_tensor(img):
        t = img.detach().float().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a (3, H, W) tensor, got {tuple(img.shape)}")
        t = t.expand(3, -1, -1)
        return torch.floor(t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {a.dtype} {a.shape}")
    return a


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return right - left


def _wrap(font, text: str, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words, line = paragraph.split(), ""
        for word in words:
            trial = f"{line} {word}".strip()
            if _text_width(font, trial) <= width or not line:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _ellipsis(font) -> str:
    # the bitmap font of Pillow < 10.1 draws Latin-1 only
    return "…" if isinstance(font, ImageFont.FreeTypeFont) else "..."


def _cut_words(font, text: str, max_words: int | None) -> str:
    """The first ``max_words`` words of ``text`` and "…" when there were more."""
    words = text.split()
    if max_words is None or len(words) <= max_words:
        return text
    return " ".join(words[:max_words]) + f" {_ellipsis(font)}"


def _cut_lines(font, lines: list[str], width: int, max_lines: int) -> list[str]:
    """At most ``max_lines`` lines; when cut, the last one ends with "…" within ``width``."""
    if len(lines) <= max_lines:
        return lines
    mark = _ellipsis(font)
    last = lines[max_lines - 1]
    while last and _text_width(font, f"{last} {mark}") > width:
        last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
    return [*lines[: max_lines - 1], f"{last} {mark}".strip()]


def _line_height(font) -> int:
    _, top, _, bottom = font.getbbox("Ag")
    return bottom - top + 4


def _draw_lines(
    draw, xy: tuple[int, int], lines: list[str], font, width: int, center: bool
) -> None:
    x0, y = xy
    for line in lines:
        x = x0 + (width - _text_width(font, line)) // 2 if center else x0
        draw.text((x, y), line, fill=_FG, font=font)
        y += _line_height(font)


def _cell(img: np.ndarray | torch.Tensor | None, size: tuple[int, int]) -> Image.Image:
    """An image nearest-resized to ``size`` (w, h); a grey placeholder for a missing one."""
    if img is None:
        return Image.new("RGB", size, _MISSING)
    pil = Image.fromarray(as_uint8(img))
    return pil if pil.size == size else pil.resize(size, Image.NEAREST)


def _cell_size(images: Sequence, min_cell: int) -> tuple[int, int]:
    hs = [as_uint8(i).shape[0] for i in images if i is not None]
    ws = [as_uint8(i).shape[1] for i in images if i is not None]
    if not hs:
        raise ValueError("no images to draw")
    h, w = max(hs), max(ws)
    zoom = max(1, math.ceil(min_cell / min(h, w)))
    return w * zoom, h * zoom


def _save_png(img: Image.Image, path: str | Path) -> Path:
    """Written beside ``path`` and renamed into place: a kill or a full disk mid-write leaves the
    previous file (or none), never half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG", optimize=False))


def comparison_grid(
    rows: Sequence[Mapping[str, np.ndarray | torch.Tensor]],
    column_names: Sequence[str],
    path: str | Path,
    captions: Sequence[str] | None = None,
    min_cell: int = 128,
    font_size: int = 14,
) -> Path:
    """One row per sample, one column per ``column_names`` entry (e.g. LR | bicubic | no-text
    baseline | TGSR coarse | TGSR fine | GT); each row maps a column name to its image (a
    missing one is a grey cell). Every cell has the size of the largest image (zoomed to at
    least ``min_cell`` px), so the LR input appears nearest-upscaled. ``captions[i]`` is written
    under row ``i``."""
    if not rows:
        raise ValueError("comparison_grid needs at least one row")
    if captions is not None and len(captions) != len(rows):
        raise ValueError(f"{len(captions)} captions for {len(rows)} rows")
    cw, ch = _cell_size([img for r in rows for img in r.values()], min_cell)
    font = _font(font_size)
    ncol = len(column_names)
    width = _PAD + ncol * (cw + _PAD)
    header = [_wrap(font, name, cw) for name in column_names]
    header_h = max(len(h) for h in header) * _line_height(font) + _PAD
    cap_lines = (
        [_wrap(font, c, width - 2 * _PAD) for c in captions] if captions else [[]] * len(rows)
    )
    row_hs = [ch + _PAD + (len(c) * _line_height(font) + _PAD if c else 0) for c in cap_lines]
    canvas = Image.new("RGB", (width, _PAD + header_h + sum(row_hs)), _BG)
    draw = ImageDraw.Draw(canvas)
    for j, lines in enumerate(header):
        _draw_lines(draw, (_PAD + j * (cw + _PAD), _PAD), lines, font, cw, center=True)
    y = _PAD + header_h
    for row, lines, rh in zip(rows, cap_lines, row_hs, strict=True):
        for j, name in enumerate(column_names):
            canvas.paste(_cell(row.get(name), (cw, ch)), (_PAD + j * (cw + _PAD), y))
        _draw_lines(draw, (_PAD, y + ch + _PAD // 2), lines, font, width - 2 * _PAD, center=False)
        y += rh
    return _save_png(canvas, path)


def edit_rows(
    lq: np.ndarray | torch.Tensor,
    captions: Sequence[str],
    outputs: Sequence[np.ndarray | torch.Tensor],
    path: str | Path,
    min_cell: int = 128,
    font_size: int = 13,
    max_words: int | None = None,
    max_lines: int = 4,
) -> Path:
    """One LR input and the outputs for several captions, side by side: ``LR input | out_1 |
    ... | out_n`` with each caption written under its output. A caption is cut to its first
    ``max_words`` words (the words the model reads) and to ``max_lines`` lines, a cut marked
    with "…", so a long caption cannot stretch the figure."""
    if len(captions) != len(outputs) or not outputs:
        raise ValueError(f"need one caption per output, got {len(captions)} and {len(outputs)}")
    cw, ch = _cell_size(list(outputs), min_cell)
    font = _font(font_size)
    labels = ["LR input"] + [_cut_words(font, str(c), max_words) for c in captions]
    wrapped = [_cut_lines(font, _wrap(font, t, cw), cw, max_lines) for t in labels]
    text_h = max(len(w) for w in wrapped) * _line_height(font) + _PAD
    canvas = Image.new("RGB", (_PAD + len(labels) * (cw + _PAD), 2 * _PAD + ch + text_h), _BG)
    draw = ImageDraw.Draw(canvas)
    for j, (img, lines) in enumerate(zip([lq, *outputs], wrapped, strict=True)):
        x = _PAD + j * (cw + _PAD)
        canvas.paste(_cell(img, (cw, ch)), (x, _PAD))
        _draw_lines(draw, (x, 2 * _PAD + ch - 2), lines, font, cw, center=True)
    return _save_png(canvas, path)


# ----------------------------------------------------------------------------- matplotlib


def _figure(ncols: int, nrows: int, panel: float):
    # lazy: matplotlib takes seconds to import and only the attention / curve figures need it
    from matplotlib.figure import Figure

    fig = Figure(figsize=(ncols * panel, nrows * panel), dpi=100)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save_fig(fig, path: str | Path) -> Path:
    """As :func:`_save_png`: the complete figure or the previous file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None})
    )


def _upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.as_tensor(np.asarray(maps, dtype=np.float32))[:, None]  # (T, 1, h, w)
    t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return t[:, 0].numpy()  # (T, H, W)


def attention_figure(
    image: np.ndarray | torch.Tensor,
    words: Sequence[str],
    attn: np.ndarray | torch.Tensor,
    path: str | Path,
    max_cols: int = 6,
) -> Path:
    """Per-word attention maps over ``image``: the image, then one panel per word (the word's
    map ``attn[t]`` bilinearly upsampled to the image, min-max normalised per word, over a grey
    copy of the image). ``attn`` is ``(T, h, w)`` with ``T >= len(words)`` (padding ignored)."""
    img = as_uint8(image)
    a = attn.detach().float().cpu().numpy() if torch.is_tensor(attn) else np.asarray(attn)
    if a.ndim != 3 or a.shape[0] < len(words):
        raise ValueError(f"attn must be (T >= {len(words)}, h, w), got {a.shape}")
    maps = _upsample(a[: len(words)], img.shape[:2]) if words else np.zeros((0, *img.shape[:2]))
    n = len(words) + 1
    ncols = min(max_cols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(ncols, nrows, 2.0)
    grey = img.mean(axis=2)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k == 0:
            ax.imshow(img, interpolation="nearest")
            ax.set_title("image", fontsize=9)
        elif k < n:
            m = maps[k - 1]
            m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
            ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.imshow(m, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(words[k - 1], fontsize=9)
    fig.tight_layout()
    return _save_fig(fig, path)


def training_curves(
    scalars: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, max_cols: int = 3
) -> Path:
    """One panel per scalar (``name -> [(step, value), ...]``), step on the x axis."""
    names = [k for k, v in scalars.items() if len(v)]
    if not names:
        raise ValueError("training_curves needs at least one non-empty series")
    ncols = min(max_cols, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = _figure(ncols, nrows, 3.2)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):
        steps = [float(s) for s, _ in scalars[name]]
        values = [float(v) for _, v in scalars[name]]
        ax.plot(steps, values, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_fig(fig, path)
