"""DAMSM text encoder: a bi-LSTM over word embeddings (paper Eq. 1; paper_vs_code.md R1, AttnGAN's
``RNN_ENCODER``).

words (B, 2·hidden, T): forward and backward outputs per step, forward first; padded steps are
exactly zero. sentence (B, 2·hidden): final hidden states of both directions. A caption with no
real word gives zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def token_mask_from_lengths(lengths: torch.Tensor, max_words: int) -> torch.Tensor:
    """(B, T) bool, True = padding."""
    steps = torch.arange(max_words, device=lengths.device)
    return steps.unsqueeze(0) >= lengths.unsqueeze(1)


@dataclass
class TextFeatures:
    """What the generator, the TIC loss and the discriminator consume."""

    words: torch.Tensor  # (B, D, T)
    sentence: torch.Tensor  # (B, D)
    token_mask: torch.Tensor  # (B, T) bool, True = padding

    def detach(self) -> TextFeatures:
        return TextFeatures(self.words.detach(), self.sentence.detach(), self.token_mask)


class TextEncoder(nn.Module):
    def __init__(
        self, vocab_size: int, embedding_dim: int = 300, hidden_dim: int = 128, dropout: float = 0.5
    ):
        super().__init__()
        self.config = {
            "vocab_size": vocab_size, "embedding_dim": embedding_dim,
            "hidden_dim": hidden_dim, "dropout": dropout,
        }  # fmt: skip
        self.vocab_size = vocab_size
        self.hidden_dim = hidden_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding_dim, hidden_dim, num_layers=1, batch_first=True, bidirectional=True
        )
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)

    @property
    def feature_dim(self) -> int:
        return 2 * self.hidden_dim

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = tokens.shape
        lengths = lengths.to(torch.int64)
        emb = self.dropout(self.embedding(tokens))  # (B, T, E)
        # packing needs lengths >= 1; empty captions are zeroed below
        packed = pack_padded_sequence(
            emb, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, (h, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # (B, T, 2H), pads = 0
        words = out.transpose(1, 2).contiguous()  # (B, 2H, T)
        sentence = torch.cat([h[0], h[1]], dim=1)  # (B, 2H): forward, backward
        nonempty = (lengths > 0).to(words.dtype).to(words.device)
        return words * nonempty.view(b, 1, 1), sentence * nonempty.view(b, 1)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> TextFeatures:
        words, sentence = self(tokens, lengths)
        return TextFeatures(
            words, sentence, token_mask_from_lengths(lengths.to(tokens.device), tokens.shape[1])
        )
