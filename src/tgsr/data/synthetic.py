"""ShapeCaps: the controlled text-guided SR benchmark (procedural, deterministic from a seed).

A scene is a smooth two-colour gradient background with one or two shapes. Each shape is filled
with a plain **solid** colour or a two-colour **pattern** (horizontal stripes, vertical stripes,
checks, dots) whose colour pair averages to the same mid grey, so after x8 bicubic
downsampling a patterned shape is a grey blob: only the caption tells its pattern and colours.

Design choices that keep the LR leak small (measured in ``tests/test_synthetic.py``):

* the pattern period is ``P = size / 16`` px (4 px at 64^2), aligned to the global pixel grid
  and centred so that each ``P x P`` cell ``[kP, (k+1)P)^2`` holds a point-symmetric copy; the
  pattern is the exact pixel-area average of a continuous pattern, so every size that is a
  multiple of 16 keeps the grey mean. The symmetry also makes MATLAB's symmetric border
  padding continue the pattern seamlessly, so a full-image pattern downsamples to exact grey;
* ``dots`` are a (P/2 x P/2) "on" block per cell (25 % coverage, distinguishable from the 50 %
  ``checks``); the "off" colour is moved towards grey, ``off = g + (g - on) / 3`` (a pale
  version of the pair's second colour), so the cell mean is still exactly the common grey;
* the pattern contrast is constant over each cell: full in cells whose corners are all at
  least :data:`TAPER` px (64^2 units) inside the shape, fading to 0 (plain grey) for cells
  that reach the edge. A pattern cut by a hard edge leaks its phase into the LR; whole
  symmetric cells average to grey up to a second-order term of the bicubic kernel.
  The scorers (:mod:`tgsr.evaluation.shapecaps`) compare only cells with contrast >= 0.5.

Attribute record (JSON-serialisable; coordinates in a 64x64 frame, scaled at render time)::

    {"format": "shapecaps-1", "split": "train", "seed": 7, "size": 64,
     "background": {"colors": [[r, g, b], [r, g, b]], "angle": 135},   # uint8 ends, degrees
     "objects": [
        {"shape": "circle",                 # SHAPES
         "position": "left",                # "left"/"right" (two objects) or null (one)
         "bbox": [x0, y0, x1, y1],          # ints, frame units, x1 - x0 == y1 - y0 == size
         "size": 26, "size_word": "big",    # 18..34; "small" <= 22, "big" >= 30, else null
         "fill": "pattern",                 # or "solid"
         "pattern": "checks",               # PATTERNS, null for solid
         "colors": ["blue", "yellow"],      # ordered pair (first = "on" cells), null for solid
         "color": null},                    # SOLID_COLORS for solid, else null
        ...]}

Splits draw from disjoint random streams (the split name is part of every scene's seed).
``compositional`` scenes use only the (shape, pattern, colour pair) combinations in
:data:`HELD_OUT`, which ``train``/``val``/``test`` never sample.
"""

from __future__ import annotations

import json
import math
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tgsr.data.degradations import degrade, image_to_tensor, quantize, tensor_to_image
from tgsr.data.sample import make_sample
from tgsr.data.synthetic_text import (
    COLOR_PAIRS,
    MAX_CAPTION_WORDS,
    PATTERNS,
    SHAPES,
    SOLID_COLORS,
    caption_rng,
    caption_words,
    eval_caption,
    make_caption,
    parse_caption,
)
from tgsr.text import Vocabulary

__all__ = [
    "COLOR_PAIRS",
    "HELD_OUT",
    "MAX_CAPTION_WORDS",
    "PATTERNS",
    "SHAPES",
    "SOLID_COLORS",
    "SPLITS",
    "SyntheticDataset",
    "build_vocabulary",
    "caption_words",
    "check_write_arguments",
    "combo",
    "eval_caption",
    "fill_image",
    "fill_key",
    "inner_mask",
    "is_held_out",
    "make_caption",
    "object_sdf",
    "output_folder_problem",
    "parse_caption",
    "pattern_amplitude",
    "render",
    "sample_scene",
    "scene_seed",
    "set_fill",
    "write_dataset",
]

FORMAT = "shapecaps-1"
FRAME = 64  # attribute coordinates live in a 64 x 64 frame
SIZE_RANGE = (18, 34)  # object side in frame px
_MIN_SIZE = {"triangle": 22, "diamond": 22}  # thin shapes: keep >= 3 full pattern cells inside
SMALL_MAX, BIG_MIN = 22, 30  # size words only where the size is clearly small / big
MARGIN, GAP = 1, 2  # frame px to the image border / between the two objects
TAPER = 1.0  # frame px over which the pattern contrast fades in from the shape's edge
GREY = 0.5  # the common mean of every colour pair
# pattern colours span 15..240 (not 0..255): the bicubic kernel's overshoot at the object's edge
# then never reaches 0 or 1, where degrade()'s clamping would make the LR depend on the pattern
PATTERN_CONTRAST = 225 / 255
SPLITS = ("train", "val", "test", "compositional")
ENDLESS_LEN = 1_000_000  # __len__ of the on-the-fly training stream (one "epoch")

RGB = {
    "red": (255, 0, 0), "cyan": (0, 255, 255), "green": (0, 255, 0), "magenta": (255, 0, 255),
    "blue": (0, 0, 255), "yellow": (255, 255, 0), "black": (0, 0, 0), "white": (255, 255, 255),
    "orange": (255, 128, 0), "purple": (128, 0, 160), "pink": (255, 150, 200),
    "brown": (140, 80, 30),
}  # fmt: skip

# (shape, pattern, colour pair) combinations only the compositional split uses. Every shape,
# pattern and pair still occurs in training, each (pattern, pair) too, but never these triples.
HELD_OUT = (
    ("circle", "checks", ("blue", "yellow")),
    ("circle", "vstripes", ("red", "cyan")),
    ("square", "dots", ("green", "magenta")),
    ("square", "hstripes", ("black", "white")),
    ("triangle", "hstripes", ("red", "cyan")),
    ("triangle", "checks", ("green", "magenta")),
    ("diamond", "vstripes", ("black", "white")),
    ("diamond", "dots", ("blue", "yellow")),
    ("hexagon", "dots", ("red", "cyan")),
    ("hexagon", "vstripes", ("green", "magenta")),
)
_HELD_OUT_SET = {(s, p, frozenset(c)) for s, p, c in HELD_OUT}


def _pick(rng: random.Random, seq):
    return seq[int(rng.random() * len(seq))]


def _randint(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return lo + int(rng.random() * (hi - lo + 1))


def combo(obj: dict) -> tuple[str, str, frozenset] | None:
    """(shape, pattern, unordered colour pair) of a patterned object, None for solid."""
    if obj.get("fill") != "pattern":
        return None
    return (obj["shape"], obj["pattern"], frozenset(obj["colors"]))


def is_held_out(obj: dict) -> bool:
    return combo(obj) in _HELD_OUT_SET


def fill_key(obj: dict) -> tuple[str, str, str]:
    """Hashable fill: ``(pattern, on, off)`` or ``("solid", colour, colour)``."""
    if obj["fill"] == "solid":
        return ("solid", obj["color"], obj["color"])
    return (obj["pattern"], obj["colors"][0], obj["colors"][1])


def set_fill(obj: dict, key: tuple[str, str, str]) -> dict:
    """A copy of ``obj`` with the fill ``key`` (inverse of :func:`fill_key`)."""
    out = dict(obj)
    if key[0] == "solid":
        out.update(fill="solid", pattern=None, colors=None, color=key[1])
    else:
        out.update(fill="pattern", pattern=key[0], colors=[key[1], key[2]], color=None)
    return out


def scene_seed(dataset_seed: int, index: int) -> int:
    """The scene seed of item ``index`` of a data set generated with ``dataset_seed``."""
    return dataset_seed * 1_000_000_000 + index


# ----------------------------------------------------------------------------- sampling


def _sample_fill(rng: random.Random, shape: str, solid_prob: float) -> dict:
    if rng.random() < solid_prob:
        return {"fill": "solid", "pattern": None, "colors": None, "color": _pick(rng, SOLID_COLORS)}
    while True:
        pattern, pair = _pick(rng, PATTERNS), _pick(rng, COLOR_PAIRS)
        if (shape, pattern, frozenset(pair)) not in _HELD_OUT_SET:
            break
    colors = list(pair) if rng.random() < 0.5 else [pair[1], pair[0]]
    return {"fill": "pattern", "pattern": pattern, "colors": colors, "color": None}


def _size_word(size: int) -> str | None:
    return "small" if size <= SMALL_MAX else "big" if size >= BIG_MIN else None


def _background(rng: random.Random) -> dict:
    """Two end colours whose gradient stays away from the objects' mid grey."""
    g = 255 * GREY
    while True:
        a = np.array([_randint(rng, 0, 255) for _ in range(3)], dtype=np.float64)
        b = np.array([_randint(rng, 0, 255) for _ in range(3)], dtype=np.float64)
        d = b - a
        t = float(np.clip(np.dot(g - a, d) / max(np.dot(d, d), 1e-9), 0.0, 1.0))
        if np.linalg.norm(a + t * d - g) >= 70:
            break
    return {
        "colors": [a.astype(int).tolist(), b.astype(int).tolist()],
        "angle": _randint(rng, 0, 359),
    }


def sample_scene(
    seed: int,
    split: str = "train",
    size: int = 64,
    two_object_prob: float = 0.5,
    solid_prob: float = 0.2,
) -> dict:
    """The attribute record of scene ``seed`` of ``split`` (deterministic)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    _check_size(size)
    rng = random.Random(f"shapecaps:{split}:{seed}")
    n = 2 if rng.random() < two_object_prob else 1
    if split == "compositional":
        combos = [_pick(rng, HELD_OUT) for _ in range(n)]
        shapes = [c[0] for c in combos]
    else:
        shapes = [_pick(rng, SHAPES) for _ in range(n)]
    while True:
        sizes = [_randint(rng, _MIN_SIZE.get(s, SIZE_RANGE[0]), SIZE_RANGE[1]) for s in shapes]
        if sum(sizes) + 2 * MARGIN + GAP * (n - 1) <= FRAME:
            break
    if n == 1:
        xs = [_randint(rng, MARGIN, FRAME - MARGIN - sizes[0])]
        positions: list[str | None] = [None]
    else:
        s1, s2 = sizes
        half = FRAME // 2
        while True:  # left centre < half < right centre, gap >= GAP; always satisfiable
            x1 = _randint(rng, MARGIN, math.ceil(half - s1 / 2) - 1)
            x2 = _randint(rng, math.floor(half - s2 / 2) + 1, FRAME - MARGIN - s2)
            if x2 - (x1 + s1) >= GAP:
                break
        xs, positions = [x1, x2], ["left", "right"]
    objects = []
    for k, (shape, s, x, pos) in enumerate(zip(shapes, sizes, xs, positions, strict=True)):
        y = _randint(rng, MARGIN, FRAME - MARGIN - s)
        if split == "compositional":
            _, pattern, pair = combos[k]
            colors = list(pair) if rng.random() < 0.5 else [pair[1], pair[0]]
            fill = {"fill": "pattern", "pattern": pattern, "colors": colors, "color": None}
        else:
            fill = _sample_fill(rng, shape, solid_prob)
        objects.append(
            {"shape": shape, "position": pos, "bbox": [x, y, x + s, y + s], "size": s,
             "size_word": _size_word(s), **fill}
        )  # fmt: skip
    return {
        "format": FORMAT,
        "split": split,
        "seed": seed,
        "size": size,
        "background": _background(rng),
        "objects": objects,
    }


# ----------------------------------------------------------------------------- geometry


def _check_size(size: int) -> None:
    if size % 16 or size < 32:
        raise ValueError(f"ShapeCaps renders at a multiple of 16 that is >= 32, got {size}")


def _unit_polygon(shape: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Inward edge normals (E, 2) and offsets (E,) of a convex shape in the unit box."""
    verts = {
        "square": [(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)],
        "diamond": [(0.0, -0.5), (0.5, 0.0), (0.0, 0.5), (-0.5, 0.0)],
        "triangle": [(0.0, -0.5), (0.5, 0.5), (-0.5, 0.5)],  # apex up, fills its box
        "hexagon": [
            (-0.5, 0.0),
            (-0.25, -0.5),
            (0.25, -0.5),
            (0.5, 0.0),
            (0.25, 0.5),
            (-0.25, 0.5),
        ],
    }.get(shape)
    if verts is None:
        return None
    v = np.array(verts, dtype=np.float64)
    centre = v.mean(0)
    d = np.roll(v, -1, axis=0) - v
    n = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
    n *= np.sign(((centre - v) * n).sum(1, keepdims=True))  # point inwards
    return n, (n * v).sum(1)


_POLYGONS = {s: _unit_polygon(s) for s in SHAPES}


def _region(obj: dict, size: int) -> tuple[slice, slice]:
    k = size / FRAME
    x0, y0, x1, y1 = obj["bbox"]
    r0, r1 = max(int(math.floor(y0 * k)) - 1, 0), min(int(math.ceil(y1 * k)) + 1, size)
    c0, c1 = max(int(math.floor(x0 * k)) - 1, 0), min(int(math.ceil(x1 * k)) + 1, size)
    return slice(r0, r1), slice(c0, c1)


def _sdf_grid(obj: dict, size: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Signed distance (px, > 0 inside) to the shape's edge on the grid ``ys x xs`` (px)."""
    k = size / FRAME
    x0, y0, x1, y1 = (c * k for c in obj["bbox"])
    s = x1 - x0
    u = (xs - (x0 + x1) / 2) / s  # (w,)
    v = (ys - (y0 + y1) / 2) / s  # (h,)
    if obj["shape"] == "circle":
        return s * (0.5 - np.hypot(v[:, None], u[None, :]))
    normals, offsets = _POLYGONS[obj["shape"]]
    d = normals[:, 0, None, None] * u[None, None, :] + normals[:, 1, None, None] * v[None, :, None]
    return s * (d - offsets[:, None, None]).min(0)  # (E, h, w) -> (h, w)


def _sdf(obj: dict, size: int, rows: slice, cols: slice) -> np.ndarray:
    """Signed distance at the pixel centres of a region."""
    ys = np.arange(rows.start, rows.stop) + 0.5
    xs = np.arange(cols.start, cols.stop) + 0.5
    return _sdf_grid(obj, size, ys, xs)


def _cell_amplitude(obj: dict, size: int, rows: slice, cols: slice) -> np.ndarray:
    """Pattern contrast per pixel of a region, constant over each pattern cell (period^2 px).

    A cell's contrast is a smoothstep of the distance from its innermost-to-edge corner to the
    shape's edge (0 at the edge, 1 at :data:`TAPER` frame px inside). Within a cell every
    pattern is point-symmetric and averages to grey, so contrast that is constant per cell adds
    no low-frequency (LR-visible) signal, unlike a pattern cut by the shape's edge.
    """
    period = size // 16
    r0, r1 = rows.start // period, -(-rows.stop // period)  # cell rows [r0, r1)
    c0, c1 = cols.start // period, -(-cols.stop // period)
    corners = _sdf_grid(
        obj, size, np.arange(r0, r1 + 1) * float(period), np.arange(c0, c1 + 1) * float(period)
    )  # (cells_h + 1, cells_w + 1)
    inner = np.minimum(
        np.minimum(corners[:-1, :-1], corners[:-1, 1:]),
        np.minimum(corners[1:, :-1], corners[1:, 1:]),
    )  # convex shape: the distance is concave, its minimum over a cell is at a corner
    w = np.clip(inner / (TAPER * size / FRAME), 0.0, 1.0)
    amp = w * w * (3 - 2 * w)  # (cells_h, cells_w)
    iy = np.arange(rows.start, rows.stop) // period - r0
    ix = np.arange(cols.start, cols.stop) // period - c0
    return amp[iy[:, None], ix[None, :]]


def object_sdf(obj: dict, size: int = 64) -> np.ndarray:
    """Signed distance (px) to the object's edge over the whole image, ``(size, size)``."""
    out = np.full((size, size), -np.inf)
    rows, cols = _region(obj, size)
    out[rows, cols] = _sdf(obj, size, rows, cols)
    return out


def pattern_amplitude(obj: dict, size: int = 64) -> np.ndarray:
    """Pattern contrast in [0, 1] over the whole image, ``(size, size)`` (0 outside)."""
    out = np.zeros((size, size))
    rows, cols = _region(obj, size)
    out[rows, cols] = _cell_amplitude(obj, size, rows, cols)
    return out


def inner_mask(obj: dict, size: int = 64) -> np.ndarray:
    """The pattern cells (contrast >= 0.5) the scorers compare: bool ``(size, size)``."""
    return pattern_amplitude(obj, size) >= 0.5


# ----------------------------------------------------------------------------- rendering


@lru_cache(maxsize=16)
def _pattern_on(size: int) -> dict[str, np.ndarray]:
    """Fraction of each pixel covered by the pattern's "on" cells, ``(size, size)`` each."""
    period = size / 16

    def tri(t):  # antiderivative of the +1/-1 square wave that is +1 on [-P/4, P/4) mod P
        u = np.mod(t + period / 4, period)
        return np.where(u < period / 2, u, period - u)

    i = np.arange(size, dtype=np.float64)
    sq = tri(i + 1) - tri(i)  # pixel-area average of the square wave, in [-1, 1]
    h = (1 + sq) / 2  # "on" fraction along one axis
    out = {
        "hstripes": np.repeat(h[:, None], size, 1),
        "vstripes": np.repeat(h[None, :], size, 0),
        "checks": (1 + sq[:, None] * sq[None, :]) / 2,
        "dots": h[:, None] * h[None, :],
    }
    for a in out.values():
        a.setflags(write=False)
    return out


def _fill_colors(key: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray]:
    on = np.asarray(RGB[key[1]], dtype=np.float64) / 255
    if key[0] == "solid":
        return on, on
    on = GREY + PATTERN_CONTRAST * (on - GREY)  # 15 / 240 levels: no clipping in the LR
    if key[0] == "dots":  # 25 % coverage: move "off" towards grey so the cell mean is GREY
        return on, GREY + (GREY - on) / 3
    off = np.asarray(RGB[key[2]], dtype=np.float64) / 255
    return on, GREY + PATTERN_CONTRAST * (off - GREY)


def _fill(key: tuple[str, str, str], size: int, rows: slice, cols: slice) -> np.ndarray:
    on, off = _fill_colors(key)
    if key[0] == "solid":
        return np.broadcast_to(on, (rows.stop - rows.start, cols.stop - cols.start, 3))
    frac = _pattern_on(size)[key[0]][rows, cols, None]
    return off + frac * (on - off)


def fill_image(key: tuple[str, str, str], size: int = 64) -> np.ndarray:
    """The fill at full contrast over the whole image, float ``(size, size, 3)`` on the 8-bit grid
    (what the GT shows inside :func:`inner_mask`)."""
    full = slice(0, size)
    return np.floor(_fill(key, size, full, full) * 255 + 0.5) / 255


def render(attrs: dict, size: int | None = None) -> np.ndarray:
    """The exact HR image of an attribute record, uint8 ``(size, size, 3)``."""
    size = int(size or attrs.get("size", FRAME))
    _check_size(size)
    bg = attrs["background"]
    a, b = (np.asarray(c, dtype=np.float64) / 255 for c in bg["colors"])
    theta = math.radians(bg["angle"])
    c = (np.arange(size) + 0.5) / size - 0.5
    t = (math.cos(theta) * c[None, :] + math.sin(theta) * c[:, None]) / (
        0.5 * (abs(math.cos(theta)) + abs(math.sin(theta)))
    )  # (H, W) in [-1, 1]
    img = a + ((t + 1) / 2)[..., None] * (b - a)  # (H, W, 3)
    for obj in attrs["objects"]:
        rows, cols = _region(obj, size)
        sd = _sdf(obj, size, rows, cols)
        alpha = np.clip(sd + 0.5, 0.0, 1.0)[..., None]  # anti-aliased edge
        fill = _fill(fill_key(obj), size, rows, cols)
        if obj["fill"] == "pattern":
            fill = GREY + _cell_amplitude(obj, size, rows, cols)[..., None] * (fill - GREY)
        img[rows, cols] = img[rows, cols] * (1 - alpha) + alpha * fill
    return np.floor(np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- vocabulary


@lru_cache(maxsize=4)
def _vocab_words(seed: int, num: int) -> tuple[str, ...]:
    captions = (
        make_caption(sample_scene(scene_seed(seed, i), "train"), caption_rng("train", i, "vocab"))
        for i in range(num)
    )
    words = Vocabulary.build(captions).words
    missing = sorted(caption_words() - set(words))  # none in practice; keeps the vocab closed
    return tuple(words + missing)


def build_vocabulary(seed: int = 0, num: int = 20_000) -> Vocabulary:
    """Vocabulary of ``num`` training-split captions (+ any generator word they missed)."""
    return Vocabulary(list(_vocab_words(seed, num)))


# ----------------------------------------------------------------------------- torch data set


class SyntheticDataset(torch.utils.data.Dataset):
    """ShapeCaps as a torch data set yielding the sample dict of ``docs/architecture.md``
    plus ``"attributes"`` (the JSON record).

    ``train=True``: the ``train`` split; ``num=None`` gives an endless stream
    (:data:`ENDLESS_LEN` items per epoch, ``set_epoch`` moves on to new scenes) and a fresh
    random caption each time an item is drawn. ``train=False``: ``split`` (default:
    ``data_cfg.synthetic.split`` if it is not ``train``, else ``data_cfg.eval_split``), a fixed
    caption per scene, ``num`` or ``synthetic.eval_num`` scenes. ``class_id`` is the item
    index (unique, so DAMSM masks no negatives).
    """

    def __init__(self, data_cfg, vocab: Vocabulary, train: bool, split: str | None = None):
        self._make_sample = make_sample
        syn = data_cfg.synthetic
        self.cfg, self.vocab, self.train = data_cfg, vocab, train
        if split is None:
            split = (
                "train" if train else (syn.split if syn.split != "train" else data_cfg.eval_split)
            )
        self.split = split
        self.seed = syn.seed
        self.size = data_cfg.hr_size
        self.num = syn.num if (syn.num is not None or train) else syn.eval_num
        self.epoch = 0
        self._draws = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        """The caption-draw counter (saved in training checkpoints for an exact resume)."""
        return {"draws": self._draws}

    def load_state_dict(self, state: dict) -> None:
        self._draws = int(state["draws"])

    def __len__(self) -> int:
        return ENDLESS_LEN if self.num is None else self.num

    def scene(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        offset = self.epoch * ENDLESS_LEN if self.num is None else 0
        syn = self.cfg.synthetic
        two = syn.two_object_prob
        if self.split == "train" and syn.train_two_object_prob is not None:
            two = syn.train_two_object_prob
        return sample_scene(
            scene_seed(self.seed, offset + index), self.split, self.size, two, syn.solid_prob
        )

    def __getitem__(self, index: int) -> dict:
        attrs = self.scene(index)
        if self.train:
            self._draws += 1
            rng = caption_rng(self.split, attrs["seed"], f"{self.epoch}:{self._draws}")
            forms = self.cfg.synthetic.train_caption_forms if self.split == "train" else "natural"
            caption = make_caption(attrs, rng, forms)
        else:
            rng, caption = None, eval_caption(attrs)
        key = f"{self.split}_{self.seed}_{index:06d}"
        sample = self._make_sample(
            render(attrs, self.size), caption, self.vocab, self.cfg, rng, key, class_id=index
        )
        sample["attributes"] = json.dumps(attrs, sort_keys=True)
        return sample


# ----------------------------------------------------------------------------- files


def check_write_arguments(
    num: int,
    size: int,
    seed: int,
    scale: int | None,
    captions: int,
    two_object_prob: float,
    solid_prob: float,
) -> None:
    """ValueError (one line, naming the option) for an argument :func:`write_dataset` cannot use."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if captions < 1:
        raise ValueError(f"--captions must be >= 1, got {captions}")
    if not 0 <= seed < 2**32:  # the range of every seed in the config
        raise ValueError(f"--seed must be in [0, 2**32), got {seed}")
    if scale is not None and scale < 2:
        raise ValueError(f"--scale must be 0 (no LR images) or >= 2, got {scale}")
    for name, p in (("--two-object-prob", two_object_prob), ("--solid-prob", solid_prob)):
        if not 0.0 <= p <= 1.0:  # also refuses NaN
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    _check_size(size)


def output_folder_problem(out, num: int, seed: int, split: str, scale: int | None) -> str | None:
    """Why ``write_dataset(out, ...)`` must not write into ``out``, or None when it may.

    ``out`` may be missing, empty, or a previous output of the same layout: the same top-level
    entries (``images/``, ``attributes.jsonl``, ``lq_x<scale>/`` with ``scale``) and the same
    scene keys (same ``--split``, ``--seed`` and ``--num``), so that every file in it is rewritten
    and nothing of another data set (or of the user's) is mixed in."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"{out} is a file, not a folder"
    if not out.is_dir() or not any(out.iterdir()):
        return None
    refuse = (
        f"{out} is not empty and does not hold a `tgsr data synth` output of the same layout "
        "(same --split, --seed, --num and --scale): choose a new or empty --out"
    )
    allowed = {"images", "attributes.jsonl"} | ({f"lq_x{scale}"} if scale else set())
    if {p.name for p in out.iterdir()} - allowed or not (out / "attributes.jsonl").is_file():
        return refuse
    keys = {f"{split}_{seed}_{i:06d}" for i in range(num)}
    try:
        lines = (out / "attributes.jsonl").read_text(encoding="utf-8").splitlines()
        old_keys = {json.loads(line)["key"] for line in lines if line.strip()}
    except (OSError, ValueError, KeyError, TypeError):
        return refuse
    if old_keys != keys:
        return refuse
    for sub, suffixes in (("images", {".png", ".txt"}), (f"lq_x{scale}", {".png"})):
        folder = out / sub
        if folder.exists() and (
            not folder.is_dir()
            or any(p.stem not in keys or p.suffix not in suffixes for p in folder.iterdir())
        ):
            return refuse
    return None


def write_dataset(
    out,
    num: int,
    size: int = 64,
    seed: int = 0,
    split: str = "train",
    scale: int | None = 8,
    captions: int = 5,
    two_object_prob: float = 0.5,
    solid_prob: float = 0.2,
) -> dict:
    """Write ``num`` scenes in the generic folder format; same arguments -> identical bytes.

    ``OUT/images/<key>.png`` + ``OUT/images/<key>.txt`` (``captions`` lines; the first is the
    fixed evaluation caption), ``OUT/attributes.jsonl`` (one ``{"key", "captions",
    "attributes"}`` object per line, sorted keys) and, with ``scale``, the 8-bit LR images
    ``OUT/lq_x<scale>/<key>.png`` made exactly as training makes them.
    """
    check_write_arguments(num, size, seed, scale, captions, two_object_prob, solid_prob)
    if scale is not None and size % scale:
        raise ValueError(f"size {size} is not a multiple of the scale {scale}")
    out = Path(out)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    lq_dir = out / f"lq_x{scale}" if scale else None
    if lq_dir is not None:
        lq_dir.mkdir(exist_ok=True)
    lines = []
    for i in range(num):
        attrs = sample_scene(scene_seed(seed, i), split, size, two_object_prob, solid_prob)
        key = f"{split}_{seed}_{i:06d}"
        caps = [eval_caption(attrs)] + [
            make_caption(attrs, caption_rng(split, attrs["seed"], f"file{j}"))
            for j in range(1, captions)
        ]
        gt = render(attrs, size)
        Image.fromarray(gt).save(img_dir / f"{key}.png", format="PNG", compress_level=6)
        (img_dir / f"{key}.txt").write_text("\n".join(caps) + "\n")
        if lq_dir is not None:
            lq = tensor_to_image(quantize(degrade(image_to_tensor(gt), scale)))
            Image.fromarray(lq).save(lq_dir / f"{key}.png", format="PNG", compress_level=6)
        lines.append(
            json.dumps({"attributes": attrs, "captions": caps, "key": key}, sort_keys=True)
        )
    (out / "attributes.jsonl").write_text("\n".join(lines) + "\n")
    return {"images": num, "split": split, "size": size, "out": str(out)}
