"""Text Attention Module (TAM; paper §3.3, Eq. 2, Fig. 3; paper_vs_code.md R3: AttnGAN's
``GlobalAttentionGeneral``).

Words are projected to the image channels by a 1×1 conv without bias; every pixel attends over
the caption's real words (softmax over words, padded words at -inf, each image masked by its own
caption's mask). Returns the text-embedded feature (B, C, H, W) and the word maps (B, T, H, W):
they sum to 1 over real words at every pixel and are exactly 0 on padding. A caption with no real
word gives attended = 0 and attn = 0.
"""

from __future__ import annotations

import torch
from torch import nn


class TextAttention(nn.Module):
    def __init__(self, channels: int, word_dim: int):
        super().__init__()
        self.project = nn.Conv1d(word_dim, channels, 1, bias=False)

    def forward(
        self, features: torch.Tensor, words: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = features.shape
        t = words.shape[-1]
        e = self.project(words.to(self.project.weight.dtype))  # (B, C, T)
        q = features.reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        scores = torch.bmm(q, e)  # (B, HW, T)
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
