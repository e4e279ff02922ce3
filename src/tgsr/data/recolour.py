"""Caption-consistent recolouring of training images (``data.recolour``, issue 14).

On real photographs the LR image already carries every colour, so L2 and TAR never reward reading
the caption's colour words and the generator learns to ignore them. This augmentation makes a
training sample whose caption disagrees with the LR image:

1. pick a colour word ``old`` of the caption whose colour covers some of the image
   (:func:`colour_mask`: soft membership in CIE Lab, by lightness for black / white / grey and by
   hue and chroma for the chromatic colours);
2. pick another colour ``new`` (uniformly among :data:`tgsr.colours.COLOUR_RGB`'s words that the
   vocabulary knows), swap the word in the caption (:func:`tgsr.colours.swap_colour`);
3. move those pixels of the *target* toward ``new``: ``target = gt + s · mask · (rgb(new) − gt)``
   with the largest ``s`` in (0, 1] whose target, downsampled, still lies within
   ``data.recolour_lr_psnr`` dB of the LR image (the LR input is made from the unchanged ``gt``).

So the caption may change colours only by as much as the LR image allows: the generator learns
that a colour word it reads moves the named pixels toward that colour, within the LR's tolerance.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container

import numpy as np
import torch

from tgsr.colours import COLOUR_LAB, COLOUR_RGB, colour_words, rgb_to_lab, swap_colour
from tgsr.data.degradations import degrade

__all__ = ["MIN_COVER", "colour_mask", "recolour", "recolour_to"]

MIN_COVER = 0.01  # a colour word whose mask covers less of the image is not recoloured


def _ramp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """0 below ``lo``, 1 above ``hi``, linear between (``lo > hi`` ramps down)."""
    return ((x - lo) / (hi - lo)).clamp(0, 1)


def colour_mask(img: torch.Tensor, colour: str) -> torch.Tensor:
    """Soft membership ``(H, W)`` in [0, 1] of the pixels of ``img`` ``(3, H, W)`` (sRGB in
    [0, 1]) in the colour word ``colour``: black = L* below 20–35 with chroma below 25–40,
    white = L* above 70–85 with little chroma, grey = little chroma at mid lightness, the others =
    hue within 12–25° of the colour's swatch (:data:`tgsr.colours.COLOUR_LAB`) with chroma above
    12–25 (brown: also dark and chroma below 60–75, pink: also light). Each ramp is linear between
    its two ends; neighbouring hues (red / orange, yellow / green) are 33° apart and do not
    overlap."""
    lab = rgb_to_lab(img)
    lum, a, b = lab[0], lab[1], lab[2]
    chroma = torch.sqrt(a * a + b * b)
    if colour == "black":
        return _ramp(lum, 35.0, 20.0) * _ramp(chroma, 40.0, 25.0)
    if colour == "white":
        return _ramp(lum, 70.0, 85.0) * _ramp(chroma, 20.0, 10.0)
    if colour in ("grey", "gray"):
        return _ramp(chroma, 12.0, 6.0) * _ramp(lum, 25.0, 35.0) * _ramp(lum, 80.0, 70.0)
    _, sa, sb = COLOUR_LAB[colour]
    hue = torch.atan2(b, a)
    dh = torch.remainder(hue - math.atan2(sb, sa) + math.pi, 2 * math.pi) - math.pi
    m = _ramp(dh.abs(), math.radians(25), math.radians(12)) * _ramp(chroma, 12.0, 25.0)
    if colour == "brown":
        m = m * _ramp(lum, 60.0, 45.0) * _ramp(chroma, 75.0, 60.0)
    elif colour == "pink":
        m = m * _ramp(lum, 50.0, 65.0)
    return m


def recolour_to(
    img: torch.Tensor,
    old: str,
    new: str,
    scale: int,
    lr_psnr: float,
    max_cover: float = 1.0,
    method: str = "bicubic",
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``img`` ``(3, H, W)`` in [0, 1] with the pixels of colour ``old`` moved toward ``new``:
    ``img + s · mask · (rgb(new) − img)``, ``mask`` = :func:`colour_mask` kept on the
    ``max_cover`` share of pixels that carry ``old`` most clearly (the part a colour word names;
    ties broken by the Lab distance to ``old``'s swatch), ``s`` the largest in (0, 1] whose
    result, downsampled by ``scale``, lies within ``lr_psnr`` dB of ``img`` downsampled.
    Returns the result and the kept mask ``(H, W)``. ``mask``: ``colour_mask(img, old)`` when
    the caller has it already."""
    mask = colour_mask(img, old) if mask is None else mask
    k = int(round(max_cover * mask.numel()))
    if k < mask.numel() and int((mask > 0).sum()) > k:
        swatch = torch.tensor(COLOUR_LAB[old]).view(3, 1, 1)
        score = mask - 1e-3 * (rgb_to_lab(img) - swatch).norm(dim=0)
        kth = torch.topk(score.flatten(), max(k, 1)).values[-1]
        mask = torch.where(score >= kth, mask, torch.zeros_like(mask))
    rgb = torch.tensor(COLOUR_RGB[new], dtype=torch.float32).view(3, 1, 1) / 255
    delta = mask * (rgb - img)
    lr = degrade(img, scale, method)
    err = (degrade((img + delta).clamp(0, 1), scale, method) - lr) * 255
    rms = float(err.pow(2).mean().sqrt())
    budget = 255.0 * 10 ** (-lr_psnr / 20)
    s = 1.0 if rms <= budget else budget / rms
    return (img + s * delta).clamp(0, 1), mask


def recolour(
    gt: np.ndarray,
    caption: str,
    known: Container[str],
    rng: random.Random,
    scale: int,
    lr_psnr: float,
    max_cover: float = 1.0,
    method: str = "bicubic",
) -> tuple[np.ndarray, str, str, str, torch.Tensor] | None:
    """``(target uint8 (H, W, 3), edited caption, old, new, mask (H, W))`` for the uint8 image ``gt`` and its
    caption (:func:`recolour_to` with a colour word ``old`` of the caption and a random ``new``),
    or None when no colour word of the caption both covers ≥ :data:`MIN_COVER` of the image and
    has another known colour to become. ``known``: the vocabulary's words."""
    olds = [w for w in dict.fromkeys(colour_words(caption)) if w in COLOUR_RGB]
    if not olds:
        return None
    img = torch.from_numpy(np.ascontiguousarray(gt)).permute(2, 0, 1).float() / 255
    rng.shuffle(olds)
    for old in olds:
        mask = colour_mask(img, old)
        if float(mask.mean()) < MIN_COVER:
            continue
        same = {old, "grey", "gray"} if old in ("grey", "gray") else {old}
        news = [w for w in COLOUR_RGB if w not in same and w in known and w != "gray"]
        if not news:
            continue
        new = rng.choice(news)
        swapped = swap_colour(caption, new=new, old=old)
        if swapped is None:
            continue
        target, mask = recolour_to(img, old, new, scale, lr_psnr, max_cover, method, mask)
        target_u8 = (target * 255).round().byte().permute(1, 2, 0).numpy()
        return target_u8, swapped[0], old, new, mask
    return None
