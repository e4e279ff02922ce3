"""The individual loss terms (paper §3.4, Eq. 3–10; docs/paper_vs_code.md R5–R7). Pure
functions on tensors.

All terms run in float32 (outputs are cast), so they are safe under bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def level_weight(weight: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """A pixel weight ``(B, 1, H, W)`` at the resolution of ``like`` (area average)."""
    if weight is None or weight.shape[-2:] == like.shape[-2:]:
        return weight
    return F.adaptive_avg_pool2d(weight.float(), like.shape[-2:])


def pyramid_l2(
    outputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ over levels of the mean squared error (the released ``MSE``, paper_vs_code.md R7);
    ``weight`` ``(B, 1, H, W)``: per-pixel weights of the full-resolution level (area-averaged
    for the others; ``data.recolour_loss_weight``)."""
    if len(outputs) != len(targets):
        raise ValueError(f"{len(outputs)} outputs but {len(targets)} target levels")
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for out, tgt in zip(outputs, targets, strict=True):
        if out.shape != tgt.shape:
            raise ValueError(f"output {tuple(out.shape)} does not match target {tuple(tgt.shape)}")
        w = level_weight(weight, out)
        if w is None:
            total = total + F.mse_loss(out.float(), tgt.float())
        else:
            total = total + (w * (out.float() - tgt.float()) ** 2).mean()
    return total


def tar_weight(
    attn: torch.Tensor,
    token_mask: torch.Tensor | None,
    size: tuple[int, int],
    mode: str = "top5",
    topk: int = 5,
) -> torch.Tensor:
    """Pixel weights (B, 1, H, W) of the text-attention reconstruction loss, detached.

    * ``top5`` (paper Eq. 10): the ``topk`` word maps with the largest attention mass (sum over
      pixels) among the caption's real words (fewer if the caption is shorter) are averaged,
      bilinearly upsampled to ``size`` and normalised so that their spatial mean is 1 per image
      (the loss keeps the scale of a plain L2 and only redistributes it). A caption with no real
      word gets weight 1 everywhere.
    * ``max`` (released ``weight_MSE``, paper_vs_code.md R7): T × max over words, nearest
      upsample, where T is the word dimension of the attention tensor; no normalisation.
    """
    attn = attn.detach().float()
    b, t = attn.shape[:2]
    if mode == "max":
        w = t * attn.amax(dim=1, keepdim=True)
        return F.interpolate(w, size=size, mode="nearest")
    if mode != "top5":
        raise ValueError(f"unknown TAR mode {mode!r}")
    k = min(topk, t)
    mass = attn.sum(dim=(2, 3))  # (B, T); padded words have mass 0
    if token_mask is not None:
        mass = mass.masked_fill(token_mask, -1.0)
        real = (~token_mask).sum(dim=1)
    else:
        real = torch.full((b,), t, device=attn.device)
    idx = mass.topk(k, dim=1).indices  # (B, k)
    maps = torch.gather(attn, 1, idx[:, :, None, None].expand(-1, -1, *attn.shape[-2:]))
    count = real.clamp(max=k)  # (B,)
    keep = (torch.arange(k, device=attn.device)[None] < count[:, None]).float()
    w = (maps * keep[:, :, None, None]).sum(1, keepdim=True) / count.clamp(min=1).view(b, 1, 1, 1)
    w = F.interpolate(w, size=size, mode="bilinear", align_corners=False)
    mean = w.mean(dim=(2, 3), keepdim=True)
    return torch.where(mean > 0, w / mean.clamp(min=1e-12), torch.ones_like(w))


def tar_loss(
    fine: Sequence[torch.Tensor],
    gt_levels: Sequence[torch.Tensor],
    attn: Sequence[torch.Tensor],
    token_mask: torch.Tensor | None,
    mode: str = "top5",
    topk: int = 5,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ over levels of mean(W_k · (fine_k − gt_k)²); attention map k belongs to level k (it may
    be at half the resolution, as in the released layout: it is upsampled). ``weight``: an extra
    per-pixel weight, as in :func:`pyramid_l2`."""
    if not (len(fine) == len(gt_levels) == len(attn)):
        raise ValueError("TAR needs one attention map per fine output and GT level")
    total = fine[0].new_zeros((), dtype=torch.float32)
    for out, gt, a in zip(fine, gt_levels, attn, strict=True):
        w = tar_weight(a, token_mask, tuple(out.shape[-2:]), mode, topk)
        extra = level_weight(weight, out)
        if extra is not None:
            w = w * extra
        total = total + (w * (out.float() - gt.float()) ** 2).mean()
    return total


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))
