"""What a caption does to a real photograph: swap a colour word, compare the two outputs.

For an image and its caption, :func:`swap_colour` replaces every occurrence of the first colour
word of the caption by another colour (``red`` → ``blue``, ``black`` → ``yellow``, ...;
:data:`COLOUR_SWAPS`). The model is run on the same LR input with both captions, and
:func:`caption_response` measures, per edit:

* ``change``: the mean absolute difference of the two outputs, in 8-bit levels (0..255, mean over
  RGB), over the ``top_fraction`` (default 10 %) most-changed pixels: how strongly the output
  responds where it responds at all (a model that ignores the text scores 0);
* ``change_all``: the same over every pixel;
* ``toward``: whether the change points toward the new colour, measured in CIE Lab (sRGB, D65)
  on the most-changed pixels. Chromatic targets: the mean (a*, b*) shift has a positive dot product
  with the direction from the pixels' mean (a*, b*) before the edit to the new colour's (a*, b*)
  (:data:`COLOUR_LAB`). Achromatic targets: ``black`` = L* goes down, ``white`` = L* goes up,
  ``grey`` = chroma goes down. An edit with no change (all pixels equal) counts as not toward.

:func:`summarise` averages them (``mean_change``, ``mean_change_all``, ``toward_fraction``,
``num_edits``); a model that ignores the caption has ``mean_change`` 0 and ``toward_fraction`` 0.
:func:`plan_edits` picks a test set's edits (leaving out, and counting, new colours the model's
vocabulary lacks and colour words beyond its ``max_words``); :func:`measure` runs a model on them
and adds the per-pair summary and the LR-PSNR of the original and the edited outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tgsr.colours import (
    _WORD,
    ACHROMATIC,
    COLOUR_LAB,
    COLOUR_RGB,
    COLOUR_SWAPS,
    colour_words,
    rgb_to_lab,
    swap_colour,
)
from tgsr.evaluation.metrics import lr_psnr

__all__ = [
    "ACHROMATIC",
    "COLOUR_LAB",
    "COLOUR_RGB",
    "COLOUR_SWAPS",
    "Edit",
    "EditResponse",
    "caption_response",
    "colour_words",
    "measure",
    "per_pair",
    "plan_edits",
    "rgb_to_lab",
    "summarise",
    "swap_colour",
]


@dataclass
class EditResponse:
    old: str
    new: str
    change: float  # mean |ΔSR| in 8-bit levels over the most-changed pixels
    change_all: float  # ... over every pixel
    toward: bool  # the Lab shift points toward the new colour
    shift: tuple[float, float, float]  # mean (ΔL*, Δa*, Δb*) over the most-changed pixels


def _toward(new: str, before: torch.Tensor, shift: torch.Tensor) -> bool:
    """``before``: mean Lab of the changed pixels before the edit; ``shift``: mean Lab change."""
    if float(shift.abs().sum()) == 0.0:
        return False
    if new == "black":
        return float(shift[0]) < 0
    if new == "white":
        return float(shift[0]) > 0
    if new in ("grey", "gray"):
        after = before[1:] + shift[1:]
        return float(after.norm()) < float(before[1:].norm())
    target = torch.tensor(COLOUR_LAB[new][1:], dtype=before.dtype)
    return float(torch.dot(shift[1:], target - before[1:])) > 0


def caption_response(
    sr_original: torch.Tensor,
    sr_edited: torch.Tensor,
    old: list[str],
    new: list[str],
    top_fraction: float = 0.1,
) -> list[EditResponse]:
    """Per image of the batches ``(B, 3, H, W)`` in [0, 1] (the outputs for the original and the
    edited caption), the response to the colour edit ``old[i] → new[i]``. Both outputs are
    rounded to 8 bit first (what a saved PNG holds)."""
    if sr_original.shape != sr_edited.shape or sr_original.dim() != 4:
        raise ValueError(f"expected two (B, 3, H, W) batches, got {tuple(sr_original.shape)} "
                         f"and {tuple(sr_edited.shape)}")  # fmt: skip
    if not 0 < top_fraction <= 1:
        raise ValueError("top_fraction must be in (0, 1]")
    a = (sr_original.detach().float().cpu().clamp(0, 1) * 255).round()
    b = (sr_edited.detach().float().cpu().clamp(0, 1) * 255).round()
    lab_a, lab_b = rgb_to_lab(a / 255), rgb_to_lab(b / 255)
    out = []
    for i in range(a.shape[0]):
        diff = (b[i] - a[i]).abs().mean(dim=0).flatten()  # (H*W,) 8-bit levels
        k = max(1, int(round(top_fraction * diff.numel())))
        top = torch.topk(diff, k).indices
        before = lab_a[i].flatten(1)[:, top].double().mean(dim=1)
        shift = (lab_b[i].flatten(1)[:, top] - lab_a[i].flatten(1)[:, top]).double().mean(dim=1)
        out.append(EditResponse(
            old[i], new[i], float(diff[top].mean()), float(diff.mean()),
            _toward(new[i], before, shift), tuple(float(v) for v in shift),
        ))  # fmt: skip
    return out


def summarise(responses: list[EditResponse]) -> dict:
    """Averages over edits (None when there are none)."""
    if not responses:
        return {"num_edits": 0, "mean_change": None, "mean_change_all": None,
                "toward_fraction": None}  # fmt: skip
    return {
        "num_edits": len(responses),
        "mean_change": float(np.mean([r.change for r in responses])),
        "mean_change_all": float(np.mean([r.change_all for r in responses])),
        "toward_fraction": float(np.mean([r.toward for r in responses])),
        "edits": {
            f"{o}->{n}": sum(1 for r in responses if (r.old, r.new) == (o, n))
            for o, n in sorted({(r.old, r.new) for r in responses})
        },  # fmt: skip
    }


@dataclass
class Edit:
    index: int  # the image
    caption: str
    edited: str
    old: str
    new: str


def plan_edits(
    captions: list[list[str]] | list[str],
    known: set[str] | None = None,
    max_words: int | None = None,
    to: list[str] | None = None,
) -> tuple[list[Edit], dict]:
    """The colour edits of a test set: for each image, its caption (or each of its captions, for a
    list of lists) whose first colour word has a swap — :data:`COLOUR_SWAPS`'s, or with ``to``
    one edit per colour of ``to`` other than the old one. An edit is left out, and counted, when
    the new colour is not in ``known`` (the model's vocabulary: an unknown word carries no colour)
    or when the swapped word lies beyond the first ``max_words`` words (the model never reads
    it)."""
    edits, skipped = [], {"no_colour": 0, "unknown_new_colour": 0, "beyond_max_words": 0}
    for i, caps in enumerate(captions):
        for cap in [caps] if isinstance(caps, str) else caps:
            found = colour_words(cap)
            if not found:
                skipped["no_colour"] += 1
                continue
            old = found[0]
            first = [w.lower() for w in _WORD.findall(cap)].index(old)
            for new in to if to is not None else [COLOUR_SWAPS[old]]:
                swap = swap_colour(cap, new=new, old=old)
                if swap is None:  # new == old
                    continue
                if known is not None and new not in known:
                    skipped["unknown_new_colour"] += 1
                    continue
                if max_words is not None and first >= max_words:
                    skipped["beyond_max_words"] += 1
                    continue
                edits.append(Edit(i, cap, swap[0], old, new))
    return edits, skipped


def per_pair(responses: list[EditResponse]) -> dict[str, dict]:
    """:func:`summarise` per colour pair ``old->new``."""
    pairs: dict[str, list[EditResponse]] = {}
    for r in responses:
        pairs.setdefault(f"{r.old}->{r.new}", []).append(r)
    return {k: {x: v for x, v in summarise(rs).items() if x != "edits"}
            for k, rs in sorted(pairs.items())}  # fmt: skip


def measure(
    model,
    lq: torch.Tensor,
    edits: list[Edit],
    encode,
    scale: int,
    method: str = "bicubic",
    batch_size: int = 16,
    top_fraction: float = 0.1,
) -> dict:
    """Run ``model(lq, tokens, lengths) -> output with .sr`` on each edit's LR image under the
    original and the edited caption (``encode(captions) -> (tokens, lengths)``) and measure the
    response: :func:`summarise` overall, :func:`per_pair`, the LR-PSNR of the original and the
    edited outputs (does the edit stay consistent with the LR image?) and the outputs."""
    idx = torch.tensor([e.index for e in edits], dtype=torch.long)
    srs = {}
    for key, caps in (("original", [e.caption for e in edits]),
                      ("edited", [e.edited for e in edits])):  # fmt: skip
        outs = []
        for start in range(0, len(edits), batch_size):
            sl = slice(start, start + batch_size)
            tokens, lengths = encode(caps[sl])
            with torch.no_grad():
                outs.append(model(lq[idx[sl]], tokens, lengths).sr.float().cpu().clamp(0, 1))
        srs[key] = torch.cat(outs)
    res = caption_response(srs["original"], srs["edited"], [e.old for e in edits],
                           [e.new for e in edits], top_fraction)  # fmt: skip
    return {
        **summarise(res),
        "per_pair": per_pair(res),
        "lr_psnr_original": float(lr_psnr(srs["original"], lq[idx], scale, method).mean()),
        "lr_psnr_edited": float(lr_psnr(srs["edited"], lq[idx], scale, method).mean()),
        "responses": res,
        "sr": srs,
    }
