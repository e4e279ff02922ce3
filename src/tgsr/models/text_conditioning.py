"""Text-conditioning additions beyond the paper (docs/paper_vs_code.md), all off by default.

The paper's generator hands the frozen DAMSM word features straight to the TAMs (Sec. 3.3,
Eq. 2) and concatenates the TAM output with the image features. These options change that, and
are built only when their ``GeneratorConfig`` key asks for them (they need ``use_text=true``):

* ``word_norm`` -> :class:`MaskedBatchNorm`: frozen DAMSM word features share a large common
  component and the caption-specific directions have a small variance; standardising each
  feature over the real words (batch statistics in training, running statistics at inference)
  lets the TAM see them (docs/quickstart.md).
* ``word_adapter="mlp"`` -> :func:`word_adapter`: a trainable per-word MLP (residual) between
  the text encoder and the TAMs, so the generator can re-map contextual word features to what it
  draws.
* ``text_fusion="concat_mul"`` -> :func:`fuse_text`: concat(F, F_attn, F * F_attn), a
  multiplicative binding term beside the paper's concat(F, F_attn).

Both word modules are attributes of the generator (``word_norm``, ``word_adapter``: the names
in every saved state dict) applied by :func:`condition_words` before the first TAM.
"""

from __future__ import annotations

import torch
from torch import nn

# fused channels per image channel: concat(F, F_attn) or concat(F, F_attn, F * F_attn)
FUSION_WIDTH = {"concat": 2, "concat_mul": 3}


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the feature dimension of (B, T, D) word features, counting only real
    words (``token_mask`` True = padding); padded positions come out as zeros."""

    def __init__(self, dim: int, momentum: float = 0.05):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, momentum=momentum, affine=True)

    def forward(self, w: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = w.shape
        real = (
            torch.ones(b, t, dtype=torch.bool, device=w.device)
            if token_mask is None
            else ~token_mask
        )
        if not self.training:  # running statistics: no indexing (export-friendly)
            out = self.norm(w.reshape(b * t, d).float()).reshape(b, t, d)
            return (out * real.unsqueeze(-1)).to(w.dtype)
        out = torch.zeros(b, t, d, dtype=w.dtype, device=w.device)
        if real.any():
            out[real] = self.norm(w[real].float()).to(w.dtype)
        return out


def word_adapter(word_dim: int) -> nn.Sequential:
    """Linear -> LeakyReLU(0.2) -> Linear on each word; used as ``w + adapter(w)``."""
    return nn.Sequential(
        nn.Linear(word_dim, word_dim), nn.LeakyReLU(0.2), nn.Linear(word_dim, word_dim)
    )


def condition_words(
    words: torch.Tensor | None,
    token_mask: torch.Tensor | None,
    norm: MaskedBatchNorm | None,
    adapter: nn.Module | None,
) -> torch.Tensor | None:
    """words (B, D, T) -> (B, D, T) through ``norm`` then ``w + adapter(w)``; either may be
    None (both None: ``words`` unchanged)."""
    if norm is None and adapter is None:
        return words
    w = words.transpose(1, 2)  # (B, T, D)
    if norm is not None:
        w = norm(w, token_mask)
    if adapter is not None:
        w = w + adapter(w)
    return w.transpose(1, 2)


def fuse_text(features: torch.Tensor, attended: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """The tensors a stage concatenates: [F, F_attn] (paper) or [F, F_attn, F * F_attn]."""
    if mode == "concat_mul":
        return [features, attended, features * attended]
    return [features, attended]
