"""Colour words and their colours: what a caption's colour word means in pixels.

Shared by the caption response (``tgsr.evaluation.caption_response``: swap a colour word, measure
the change) and the caption-consistent recolouring of training images (``tgsr.data.recolour``).
"""

from __future__ import annotations

import re

import torch

__all__ = [
    "ACHROMATIC",
    "COLOUR_LAB",
    "COLOUR_RGB",
    "COLOUR_SWAPS",
    "colour_words",
    "rgb_to_lab",
    "swap_colour",
]

# the new colour for each colour word (one fixed choice, far apart in Lab)
COLOUR_SWAPS: dict[str, str] = {
    "red": "blue", "blue": "yellow", "yellow": "blue", "black": "yellow", "white": "red",
    "grey": "red", "gray": "red", "brown": "blue", "orange": "blue", "green": "red",
    "purple": "yellow", "pink": "green",
}  # fmt: skip

# (L*, a*, b*) of a typical swatch of each colour (sRGB primaries / common web colours, D65)
COLOUR_LAB: dict[str, tuple[float, float, float]] = {
    "red": (53.2, 80.1, 67.2), "blue": (32.3, 79.2, -107.9), "yellow": (97.1, -21.6, 94.5),
    "green": (46.2, -51.7, 49.9), "orange": (74.9, 23.9, 78.9), "purple": (29.8, 58.9, -36.5),
    "pink": (83.6, 24.1, 3.3), "brown": (37.5, 49.7, 30.5), "black": (0.0, 0.0, 0.0),
    "white": (100.0, 0.0, 0.0), "grey": (53.6, 0.0, 0.0), "gray": (53.6, 0.0, 0.0),
}  # fmt: skip
ACHROMATIC = ("black", "white", "grey", "gray")
# (53.2, 80.1, 67.2) etc. are Lab of the sRGB colours red (255,0,0), blue (0,0,255),
# yellow (255,255,0), green (0,128,0), orange (255,165,0), purple (128,0,128), pink (255,192,203),
# brown (165,42,42); tests/test_caption_response.py checks them against rgb_to_lab.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0), "green": (0, 128, 0),
    "orange": (255, 165, 0), "purple": (128, 0, 128), "pink": (255, 192, 203),
    "brown": (165, 42, 42), "black": (0, 0, 0), "white": (255, 255, 255),
    "grey": (128, 128, 128), "gray": (128, 128, 128),
}  # fmt: skip

_WORD = re.compile(r"[A-Za-z]+")


def colour_words(caption: str) -> list[str]:
    """The colour words of ``caption`` (lower case, in order, with repeats)."""
    return [w.lower() for w in _WORD.findall(caption) if w.lower() in COLOUR_SWAPS]


def swap_colour(
    caption: str, new: str | None = None, old: str | None = None
) -> tuple[str, str, str] | None:
    """``(edited caption, old colour, new colour)``: every occurrence of ``old`` (default: the
    first colour word) replaced by ``new`` (default :data:`COLOUR_SWAPS`), keeping an initial
    capital; None when the caption names no colour (or ``old`` is absent, or ``new == old``)."""
    found = colour_words(caption)
    if not found:
        return None
    old = old.lower() if old is not None else found[0]
    if old not in found:
        return None
    new = (new or COLOUR_SWAPS[old]).lower()
    if new == old:
        return None

    def repl(m: re.Match) -> str:
        w = m.group(0)
        if w.lower() != old:
            return w
        return new.capitalize() if w[0].isupper() else new

    return _WORD.sub(repl, caption), old, new


def rgb_to_lab(img: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] ``(..., 3, H, W)`` → CIE Lab (D65) ``(..., 3, H, W)``: L* in [0, 100]."""
    img = img.clamp(0, 1).double()
    lin = torch.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4)
    r, g, b = lin.unbind(-3)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883
    d = 6 / 29

    def f(t):
        return torch.where(t > d**3, t.clamp_min(1e-12) ** (1 / 3), t / (3 * d * d) + 4 / 29)

    fx, fy, fz = f(x), f(y), f(z)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3).float()
