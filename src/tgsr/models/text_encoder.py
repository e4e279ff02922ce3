"""DAMSM text encoder: a bi-LSTM over word embeddings (paper Eq. 1; paper_vs_code.md R1, AttnGAN's
``RNN_ENCODER``).

words (B, 2·hidden, T): forward and backward outputs per step, forward first; padded steps are
exactly zero. sentence (B, 2·hidden): final hidden states of both directions. A caption with no
real word gives zeros.

``TextEncoder(config, vocab_size)`` takes its :class:`~tgsr.config.TextEncoderConfig` and keeps it
as ``.config``. :meth:`TextEncoder.forward` runs the LSTM on packed sequences;
:meth:`TextEncoder.forward_padded` gives the same outputs (eval mode) from the padded batch, which
ONNX can express (``tgsr export --onnx``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tgsr.config import TextEncoderConfig


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
    def __init__(self, config: TextEncoderConfig, vocab_size: int):
        super().__init__()
        config.validate()
        self.config, self.vocab_size, self.hidden_dim = config, vocab_size, config.hidden_dim
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.embedding_dim, config.hidden_dim, num_layers=1, batch_first=True,
            bidirectional=True,
        )  # fmt: skip
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

    def forward_padded(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` (eval mode: no dropout) without packed sequences, for ONNX export.

        Forward direction: the LSTM over the padded batch gives, at every real step, what the
        packed run gives (padding only follows the real words). Backward direction: each caption
        is reversed *within its length* (``t -> length - 1 - t`` for real steps, padding left in
        place), run through the reverse-direction weights as a forward LSTM, and the outputs are
        put back in caption order. Padded steps are zeroed. The sentence vector is the forward
        output at the last real step and the backward output at step 0 (the packed run's final
        states); a caption of length 0 gives zeros, as in :meth:`forward`."""
        _, t = tokens.shape
        emb = self.embedding(tokens)  # (B, T, E)
        lengths = lengths.to(torch.int64).unsqueeze(1)  # (B, 1)
        steps = torch.arange(t, device=tokens.device).unsqueeze(0)  # (1, T)
        valid = steps < lengths  # (B, T)
        out_f = self._one_direction(emb, "")  # (B, T, H)
        order = torch.where(valid, lengths - 1 - steps, steps)  # (B, T), its own inverse
        emb_r = emb.gather(1, order.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        out_b = self._one_direction(emb_r, "_reverse")  # (B, T, H) in reversed order
        out_b = out_b.gather(1, order.unsqueeze(-1).expand(-1, -1, out_b.shape[-1]))
        keep = valid.unsqueeze(-1).to(out_f.dtype)  # (B, T, 1)
        words = (torch.cat([out_f, out_b], dim=-1) * keep).transpose(1, 2)  # (B, 2H, T)
        last = (lengths - 1).clamp(min=0).unsqueeze(-1).expand(-1, 1, out_f.shape[-1])
        h_f = out_f.gather(1, last).squeeze(1)  # (B, H)
        h_b = out_b[:, 0]  # (B, H)
        nonempty = (lengths > 0).to(out_f.dtype)  # (B, 1)
        return words, torch.cat([h_f, h_b], dim=1) * nonempty  # sentence (B, 2H)

    def _one_direction(self, x: torch.Tensor, suffix: str) -> torch.Tensor:
        """One direction of ``self.lstm`` (weights ``*_l0`` or ``*_l0_reverse``) run forward over
        ``x`` (B, T, E) from zero states -> (B, T, H); the LSTM op ``nn.LSTM`` itself calls."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = [getattr(self.lstm, f"{name}_l0{suffix}") for name in names]
        h0 = x.new_zeros(1, x.shape[0], self.hidden_dim)
        # (input, (h0, c0), params, has_biases, num_layers, dropout, train, bidirectional,
        # batch_first)
        out, _, _ = torch.lstm(x, (h0, h0), params, True, 1, 0.0, False, False, True)
        return out

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> TextFeatures:
        words, sentence = self(tokens, lengths)
        return TextFeatures(
            words, sentence, token_mask_from_lengths(lengths.to(tokens.device), tokens.shape[1])
        )
