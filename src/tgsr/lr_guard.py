"""The LR guard: keep an output within a set distance of its LR input (``lr_guard`` dB).

A text-guided output may differ from what its LR input shows (that is the point of editing the
caption), but a practitioner usually wants a bound on how far: downsampled again, the output
should still be the input. :func:`lr_guard` enforces such a bound after the generator:

1. ``P`` = the output made LR-consistent by iterative back-projection
   (``x ← clamp(x + up(lq − degrade(x)))``, ``up`` the bicubic upscale), as many rounds as it
   takes to reach 48 dB or the bound + 1 dB (one for a trained model's output, which a round
   brings to the 8-bit floor, ≈ 60 dB);
2. the result is ``sr + α · (P − sr)`` per image, with the **smallest** ``α`` in [0, 1] whose
   8-bit result, downsampled with the data set's degradation and rounded to 8 bit, lies within
   ``min_psnr`` dB of the LR input (the LR-PSNR of :func:`tgsr.evaluation.metrics.lr_psnr`).
   An output already within the bound is returned unchanged (``α = 0``).

Back-projection changes only what the LR image can see (block means at ×8); the details the
generator adds on top (high frequencies) are kept, and an edit keeps as much of its
low-frequency change as the bound allows. Not in the paper; off unless asked for
(``TGSRPipeline(..., lr_guard=DB)``, ``pipeline.json`` ``lr_guard``, ``tgsr upscale --lr-guard``).
"""

from __future__ import annotations

import math

import torch

from tgsr.data.degradations import Method, degrade, imresize, quantize
from tgsr.evaluation.metrics import lr_psnr, psnr

__all__ = ["back_project", "check_guard_db", "lr_guard"]


def check_guard_db(value: object, *, zero_is_off: bool, name: str = "lr_guard") -> float | None:
    """``value`` checked as a guard bound: ``None`` (not given) stays ``None``, else a finite
    number of dB > 0 (or ``0``, meaning off, where ``zero_is_off``) returned as a float.
    Raises ``ValueError`` with a one-line message naming ``name``; the pipeline, its
    ``pipeline.json``, the export and the CLI all check with this one rule."""
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and (value > 0 or (zero_is_off and value == 0)):
        return float(value)
    need = "a number of dB >= 0 (0: off)" if zero_is_off else "a positive number of dB"
    raise ValueError(f"{name} must be {need}, got {value!r}")


def back_project(
    sr: torch.Tensor,
    lq: torch.Tensor,
    scale: int,
    method: Method = "bicubic",
    rounds: int = 2,
    until: float | None = None,
    max_rounds: int = 40,
) -> torch.Tensor:
    """``sr`` ``(B, 3, H, W)`` in [0, 1] moved onto its LR input ``lq`` ``(B, 3, h, w)`` by
    ``rounds`` of iterative back-projection, clamped to [0, 1] after each; with ``until`` (dB),
    as many rounds (up to ``max_rounds``) as it takes every image's LR-PSNR to reach it (one or
    two for a trained model's output; far more for one that is far off its input)."""
    x = sr.float()
    lq = lq.float()
    for done in range(max_rounds if until is not None else rounds):
        if until is not None and done and bool((lr_psnr(x, lq, scale, method) >= until).all()):
            break
        x = (x + imresize(lq - degrade(x, scale, method), scale, method=method)).clamp(0, 1)
    return x


def lr_guard(
    sr: torch.Tensor,
    lq: torch.Tensor,
    scale: int,
    min_psnr: float,
    method: Method = "bicubic",
    steps: int = 12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(guarded (B, 3, H, W) float in [0, 1], α (B,))``: each output of ``sr`` pulled toward
    its back-projection just enough that its LR-PSNR against ``lq`` is at least ``min_psnr`` dB
    (``α`` by bisection over ``steps`` halvings, starting from the linear estimate
    ``1 − budget / error``). Where even ``α = 1`` misses (a bound above the 8-bit floor),
    ``α = 1``."""
    if sr.dim() != 4 or lq.dim() != 4 or sr.shape[0] != lq.shape[0]:
        raise ValueError(f"lr_guard expects (B, 3, H, W) batches, got {tuple(sr.shape)} and "
                         f"{tuple(lq.shape)}")  # fmt: skip
    min_psnr = check_guard_db(min_psnr, zero_is_off=False, name="lr_guard: min_psnr")
    sr = sr.float().clamp(0, 1)
    lq = lq.float()
    before = lr_psnr(sr, lq, scale, method)
    alpha = torch.zeros(sr.shape[0])
    todo = (before < min_psnr).nonzero().flatten().tolist()
    if not todo:
        return sr, alpha
    out = sr.clone()
    for i in todo:
        x, y = sr[i : i + 1], lq[i : i + 1]
        delta = back_project(x, y, scale, method, until=max(min_psnr + 1.0, 48.0)) - x
        a = _smallest_alpha(x, y, delta, scale, min_psnr, method, float(before[i]), steps)
        out[i] = (x + a * delta)[0]
        alpha[i] = a
    return out, alpha


def _smallest_alpha(x, y, delta, scale, min_psnr, method, before: float, steps: int) -> float:
    """The smallest α in [0, 1] (to about 1e-3) with ``x + α · delta`` within ``min_psnr`` dB
    of ``y``; 1 where none is.

    The bisection runs on the LR image, which is about linear in α: ``degrade(x + α·δ) ≈
    degrade(x) + α · (degrade(x + δ) − degrade(x))``, exact at α = 0 and 1, off only by the
    clamp inside ``degrade`` and the 8-bit rounding of the HR image. That costs two full-size
    downsamplings instead of one per step (``benchmarks/speed.py --sections guard``). The
    result is then checked with the exact measure (:func:`tgsr.evaluation.metrics.lr_psnr`)
    and raised by 1e-3 steps where the rounding needs it."""

    def ok(a: float) -> bool:
        return float(lr_psnr(x + a * delta, y, scale, method)) >= min_psnr

    base = degrade(x, scale, method)
    step = degrade(x + delta, scale, method) - base  # degrade clamps: not degrade(delta)
    target = quantize(y)

    def ok_lr(a: float) -> bool:  # the linear LR image, rounded as lr_psnr rounds it
        return float(psnr(quantize(base + a * step), target, 1.0)) >= min_psnr

    # the LR error shrinks about linearly in α: start from that estimate, then bisect [lo, hi]
    guess = min(1.0, max(0.0, 1.0 - 10 ** (-(min_psnr - before) / 20)))
    if ok_lr(guess):
        lo, hi = 0.0, guess
    elif ok_lr(1.0):
        lo, hi = guess, 1.0
    else:
        return 1.0  # even the full pull misses (or only just meets) the bound
    for _ in range(steps):
        if hi - lo < 1e-3:
            break
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ok_lr(mid) else (mid, hi)
    return _raise_until_ok(ok, hi)


def _raise_until_ok(ok, a: float, step: float = 1e-3, tries: int = 8) -> float:
    """``a``, or the first of ``a + step, a + 2·step, …`` (then 1) that ``ok`` accepts."""
    for _ in range(tries):
        if ok(a):
            return a
        a = min(1.0, a + step)
    return a if ok(a) else 1.0
