"""Exact scorers for the ShapeCaps benchmark (:mod:`tgsr.data.synthetic`): no learned classifier.

* :func:`classify_fill`: the SR pixels of an object's pattern cells (contrast >= 0.5, away
  from the edge) against renders of every candidate fill (pattern x ordered colour pair,
  optionally every solid colour) over the same pixels; the nearest (MSE) wins.
* :func:`pattern_accuracy`: fraction of patterned objects whose fill is classified right,
  overall and split into one-object and two-object scenes. Chance: :func:`chance_level`
  (1 / 32: 4 patterns x 4 pairs x 2 orders).
* :func:`make_edit` edits a record (one object's fill, or the two objects' fills swapped), so
  the same LR is super-resolved with the edited caption; :func:`edit_success` says whether
  every object follows the edited record (edited ones changed, untouched ones kept).

Images: ``(H, W, 3)`` or ``(3, H, W)``, float in [0, 1] or uint8, numpy or torch; batches as a
list, an ``(N, H, W, 3)`` array or an ``(N, 3, H, W)`` tensor. Records: dicts or JSON strings.
"""

from __future__ import annotations

import copy
import json
import random
from functools import lru_cache

import numpy as np
import torch

from tgsr.data.synthetic import (
    COLOR_PAIRS,
    GREY,
    PATTERNS,
    SOLID_COLORS,
    fill_image,
    fill_key,
    is_held_out,
    pattern_amplitude,
    set_fill,
)

__all__ = [
    "PATTERN_FILLS",
    "SOLID_FILLS",
    "can_edit",
    "chance_level",
    "classify_fill",
    "edit_success",
    "make_edit",
    "pattern_accuracy",
    "swap_success",
]

PATTERN_FILLS = tuple(
    (p, a, b) for p in PATTERNS for pair in COLOR_PAIRS for a, b in (pair, pair[::-1])
)
SOLID_FILLS = tuple(("solid", c, c) for c in SOLID_COLORS)
MIN_CONTRAST = 0.5  # pattern cells compared by the scorers


def chance_level() -> float:
    """Pattern accuracy of a uniform guess (1 / 32)."""
    return 1.0 / len(PATTERN_FILLS)


# ----------------------------------------------------------------------------- inputs


def _as_hwc(img) -> np.ndarray:
    """One image -> float32 ``(H, W, 3)`` in [0, 1]."""
    if torch.is_tensor(img):
        img = img.detach().float().cpu().numpy()
    img = np.asarray(img)
    if img.ndim != 3:
        raise ValueError(f"expected one image (H, W, 3) or (3, H, W), got shape {img.shape}")
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255
    return img.astype(np.float32, copy=False)


def _as_list(images) -> list:
    if torch.is_tensor(images) or isinstance(images, np.ndarray):
        if images.ndim == 3:
            return [images]
    return list(images)


def _as_attrs(attrs) -> dict:
    return json.loads(attrs) if isinstance(attrs, (str, bytes)) else attrs


@lru_cache(maxsize=8)
def _bank(size: int, include_solid: bool) -> tuple[tuple, np.ndarray, np.ndarray]:
    """Candidate keys, their full-contrast renders ``(K, H, W, 3)`` and an is-pattern flag."""
    keys = PATTERN_FILLS + (SOLID_FILLS if include_solid else ())
    renders = np.stack([fill_image(k, size) for k in keys]).astype(np.float32)
    is_pattern = np.array([k[0] != "solid" for k in keys])
    return keys, renders, is_pattern


# ----------------------------------------------------------------------------- classification


def _errors(sr: np.ndarray, obj: dict, include_solid: bool) -> tuple[tuple, np.ndarray]:
    size = sr.shape[0]
    if sr.shape[:2] != (size, size):
        raise ValueError(f"ShapeCaps images are square, got {sr.shape}")
    keys, renders, is_pattern = _bank(size, include_solid)
    amp = pattern_amplitude(obj, size)
    mask = amp >= MIN_CONTRAST
    if not mask.any():
        raise ValueError(f"object {obj['shape']} {obj['bbox']} has no pattern cell to compare")
    x = sr[mask]  # (N, 3)
    a = amp[mask].astype(np.float32)[None, :, None]  # (1, N, 1)
    cand = renders[:, mask]  # (K, N, 3)
    # the GT shows pattern cells at contrast `amp` around grey; solid fills are plain
    cand = np.where(is_pattern[:, None, None], GREY + a * (cand - GREY), cand)
    return keys, ((cand - x[None]) ** 2).mean(axis=(1, 2))


def classify_fill(sr, attrs, obj_index: int, include_solid: bool = False) -> tuple[str, str, str]:
    """The nearest candidate fill of object ``obj_index``: ``(pattern, on, off)`` (or
    ``("solid", colour, colour)`` when ``include_solid``)."""
    attrs = _as_attrs(attrs)
    keys, err = _errors(_as_hwc(sr), attrs["objects"][obj_index], include_solid)
    return keys[int(np.argmin(err))]


def pattern_accuracy(sr_images, attrs_list) -> dict:
    """Pattern accuracy over every patterned object (candidates: the 32 pattern fills).

    Returns ``pattern_accuracy``, ``pattern_accuracy_one_object``,
    ``pattern_accuracy_two_objects`` (``None`` where there is no such object),
    ``pattern_type_accuracy`` (the pattern right, colours ignored), the object counts and
    ``chance``.
    """
    images, records = _as_list(sr_images), [_as_attrs(a) for a in attrs_list]
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images but {len(records)} attribute records")
    hits = {1: [], 2: []}
    type_hits = []
    for img, rec in zip(images, records, strict=True):
        sr = _as_hwc(img)
        n = len(rec["objects"])
        for obj in rec["objects"]:
            if obj["fill"] != "pattern":
                continue
            keys, err = _errors(sr, obj, include_solid=False)
            pred = keys[int(np.argmin(err))]
            hits[n].append(pred == fill_key(obj))
            type_hits.append(pred[0] == obj["pattern"])

    def rate(v):
        return float(np.mean(v)) if v else None

    return {
        "pattern_accuracy": rate(hits[1] + hits[2]),
        "pattern_accuracy_one_object": rate(hits[1]),
        "pattern_accuracy_two_objects": rate(hits[2]),
        "pattern_type_accuracy": rate(type_hits),
        "num_objects": len(hits[1]) + len(hits[2]),
        "num_objects_one": len(hits[1]),
        "num_objects_two": len(hits[2]),
        "chance": chance_level(),
    }


# ----------------------------------------------------------------------------- edits


def _allowed(obj: dict, key: tuple, allow_held_out: bool) -> bool:
    return allow_held_out or not is_held_out(set_fill(obj, key))


def _default_allow(attrs: dict, allow_held_out: bool | None) -> bool:
    return attrs.get("split") == "compositional" if allow_held_out is None else allow_held_out


def can_edit(attrs, kind: str = "one", allow_held_out: bool | None = None) -> bool:
    """Whether :func:`make_edit` can edit this record (``"one"``: a patterned object;
    ``"swap"``: two patterned objects with different fills, swappable within the split)."""
    attrs = _as_attrs(attrs)
    allow = _default_allow(attrs, allow_held_out)
    objs = attrs["objects"]
    if kind == "one":
        return any(o["fill"] == "pattern" for o in objs)
    if kind != "swap":
        raise ValueError(f"kind must be 'one' or 'swap', got {kind!r}")
    if len(objs) != 2 or any(o["fill"] != "pattern" for o in objs):
        return False
    a, b = (fill_key(o) for o in objs)
    return a != b and _allowed(objs[0], b, allow) and _allowed(objs[1], a, allow)


def make_edit(attrs, rng: random.Random | int | None = None, kind: str = "one",
              allow_held_out: bool | None = None) -> dict:  # fmt: skip
    """An edited copy of ``attrs``; the LR of the original stays valid (every pattern fill has
    the same grey mean).

    ``"one"``: one patterned object (random) gets another pattern fill (pattern and/or ordered
    colour pair). ``"swap"``: the two objects' fills are exchanged. Unless ``allow_held_out``
    (default: only for the compositional split) no edit creates a held-out combination.
    Raises ``ValueError`` where :func:`can_edit` is false.
    """
    attrs = _as_attrs(attrs)
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    if not can_edit(attrs, kind, allow_held_out):
        raise ValueError(f"this scene cannot take a {kind!r} edit (see can_edit)")
    allow = _default_allow(attrs, allow_held_out)
    out = copy.deepcopy(attrs)
    objs = out["objects"]
    if kind == "swap":
        a, b = fill_key(objs[0]), fill_key(objs[1])
        objs[0], objs[1] = set_fill(objs[0], b), set_fill(objs[1], a)
        return out
    idx = [i for i, o in enumerate(objs) if o["fill"] == "pattern"]
    i = idx[int(rng.random() * len(idx))]
    old = fill_key(objs[i])
    choices = [k for k in PATTERN_FILLS if k != old and _allowed(objs[i], k, allow)]
    objs[i] = set_fill(objs[i], choices[int(rng.random() * len(choices))])
    return out


def _edit_ok(sr: np.ndarray, original: dict, edited: dict, swap: bool) -> bool:
    if len(original["objects"]) != len(edited["objects"]):
        raise ValueError("the edited record must have the same objects as the original")
    pairs = zip(original["objects"], edited["objects"], strict=True)
    changed = [fill_key(a) != fill_key(b) for a, b in pairs]
    if not any(changed):
        raise ValueError("the edited record changes no fill")
    if swap and not all(changed):
        raise ValueError("a swap changes both objects' fills")
    for obj in edited["objects"]:  # edited objects follow the new fill, the others keep theirs
        keys, err = _errors(sr, obj, include_solid=True)
        if keys[int(np.argmin(err))] != fill_key(obj):
            return False
    return True


def edit_success(sr_edited, original_attrs, edited_attrs, *, _swap: bool = False):
    """Whether the output for the edited caption follows it: every edited object shows its new
    fill and every untouched object keeps its original one (candidates: pattern fills and
    solid colours). One image + one record pair -> ``bool``; batches -> ``np.ndarray[bool]``.
    """
    single = isinstance(original_attrs, (dict, str, bytes))
    images = [sr_edited] if single else _as_list(sr_edited)
    originals = [original_attrs] if single else list(original_attrs)
    edits = [edited_attrs] if single else list(edited_attrs)
    if not len(images) == len(originals) == len(edits):
        raise ValueError("need as many images as original and edited records")
    triples = zip(images, originals, edits, strict=True)
    ok = np.array(
        [_edit_ok(_as_hwc(im), _as_attrs(o), _as_attrs(e), _swap) for im, o, e in triples],
        dtype=bool,
    )
    return bool(ok[0]) if single else ok


def swap_success(sr_edited, original_attrs, edited_attrs):
    """:func:`edit_success` for swap edits: both objects must show their swapped fills."""
    return edit_success(sr_edited, original_attrs, edited_attrs, _swap=True)
