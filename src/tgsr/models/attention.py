"""Text Attention Module (TAM; paper §3.3, Eq. 2, Fig. 3; paper_vs_code.md R3: AttnGAN's
``GlobalAttentionGeneral``).

Words are projected to the image channels by a 1×1 conv without bias; every pixel attends over
the caption's real words (softmax over words, padded words at -inf, each image masked by its own
caption's mask). Returns the text-embedded feature (B, C, H, W) and the word maps (B, T, H, W):
they sum to 1 over real words at every pixel and are exactly 0 on padding. A caption with no real
word gives attended = 0 and attn = 0.

``query_extra`` (``GeneratorConfig.tam_coords``, not in the paper): the scores use
``concat(features, extra)`` as the query (e.g. the pixel's x/y coordinates) against words
projected to ``channels + query_extra`` dims; the values are the first ``channels`` dims.
"""

from __future__ import annotations

import torch
from torch import nn


class TextAttention(nn.Module):
    def __init__(self, channels: int, word_dim: int, query_extra: int = 0):
        super().__init__()
        self.channels, self.query_extra = channels, query_extra  # values: the first C dims
        self.project = nn.Conv1d(word_dim, channels + query_extra, 1, bias=False)

    def forward(
        self,
        features: torch.Tensor,
        words: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        query_extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, C, H, W), words (B, D, T), token_mask (B, T) True = padding,
        query_extra (B, E, H, W) when built with ``query_extra=E``."""
        b, c, h, w = features.shape
        t = words.shape[-1]
        if (query_extra is None) != (self.query_extra == 0):
            raise ValueError(f"this TAM takes {self.query_extra} extra query channels")
        e = self.project(words.to(self.project.weight.dtype))  # (B, C [+ E], T)
        q = features if query_extra is None else torch.cat([features, query_extra.to(features)], 1)
        q = q.reshape(b, q.shape[1], h * w).transpose(1, 2)  # (B, HW, C [+ E])
        scores = torch.bmm(q, e)  # (B, HW, T)
        e = e[:, : self.channels]  # the values (all of e without extra query channels)
        if token_mask is None:
            attn = torch.softmax(scores, dim=-1)
        else:
            empty = token_mask.all(dim=-1)  # (B,)
            mask = (token_mask & ~empty.unsqueeze(-1)).unsqueeze(1)  # (B, 1, T)
            attn = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
            attn = attn.masked_fill(empty.view(b, 1, 1), 0.0)
        attended = torch.bmm(attn, e.transpose(1, 2))  # (B, HW, C)
        attended = attended.transpose(1, 2).reshape(b, c, h, w)
        return attended, attn.transpose(1, 2).reshape(b, t, h, w)
