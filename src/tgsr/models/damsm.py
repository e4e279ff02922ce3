"""DAMSM: word–region matching (paper Eq. 6–9; docs/paper_vs_code.md R2), the word and
sentence losses, TIM and R-precision.

Word-level score of image b and caption c (AttnGAN's, with the γ1 and γ2 that the
paper's printed Eq. 6–8 lost; docs/paper_vs_code.md R2):

    s = vᵀ e                       (R regions × T words)
    s̄ = softmax over the caption's real words, per region          (Eq. 6)
    α = softmax over regions of γ1·s̄, per word;  c_t = Σ_r α_{t,r} v_r   (Eq. 7)
    S(b, c) = log Σ_{real t} exp(γ2 · cos(c_t, e_t))                (Eq. 8)

Padding is handled with the caption's own mask in every pair (each caption is masked by its own
``token_mask`` row, never a tiled one: AttnGAN issue #93), so a batch of mixed lengths gives the
same scores as each pair computed alone. A caption with no real word scores 0.

Everything here runs in float32 even under autocast.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _fp32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.float() for t in tensors]


def _effective_mask(token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask with empty captions unmasked (their zero word features give cos = 0; the score is
    replaced afterwards), so no softmax ever runs over only -inf."""
    empty = token_mask.all(dim=-1)  # (B,)
    return token_mask & ~empty.unsqueeze(-1), empty


def _match(v: torch.Tensor, e: torch.Tensor, mask: torch.Tensor, gamma1: float, gamma2: float):
    """v (..., D, R), e (..., D, T), mask (..., T) broadcastable -> score (...), attn (..., T, R)."""
    s = v.transpose(-1, -2) @ e  # (..., R, T)
    s = s.masked_fill(mask.unsqueeze(-2), float("-inf"))
    s = torch.softmax(s, dim=-1)  # over words, per region (Eq. 6)
    attn = torch.softmax(gamma1 * s.transpose(-1, -2), dim=-1)  # (..., T, R) over regions
    context = v @ attn.transpose(-1, -2)  # (..., D, T)  (Eq. 7)
    cos = F.cosine_similarity(context, e.expand_as(context), dim=-2, eps=1e-8)  # (..., T)
    cos = cos.masked_fill(mask, float("-inf"))
    return torch.logsumexp(gamma2 * cos, dim=-1), attn  # (Eq. 8)


def _match_pairs(
    v: torch.Tensor, e: torch.Tensor, mask: torch.Tensor, gamma1: float, gamma2: float
):
    """All image-caption pairs at once without materialising (B_img, B_cap, D, R) copies:
    v (I, D, R), e (J, D, T), mask (J, T) -> score (I, J). Same maths as :func:`_match`."""
    s = torch.einsum("idr,jdt->ijrt", v, e)  # one (I*R, D) x (D, J*T) matmul
    s = s.masked_fill(mask[None, :, None, :], float("-inf"))
    s = torch.softmax(s, dim=-1)  # over words, per region (Eq. 6)
    attn = torch.softmax(gamma1 * s.transpose(-1, -2), dim=-1)  # (I, J, T, R)
    context = torch.einsum("idr,ijtr->ijdt", v, attn)  # (I, J, D, T)  (Eq. 7)
    cos = F.cosine_similarity(context, e.unsqueeze(0), dim=-2, eps=1e-8)  # (I, J, T)
    cos = cos.masked_fill(mask.unsqueeze(0), float("-inf"))
    return torch.logsumexp(gamma2 * cos, dim=-1)  # (Eq. 8)


def word_scores(
    regions: torch.Tensor,
    words: torch.Tensor,
    token_mask: torch.Tensor,
    gamma1: float,
    gamma2: float,
) -> torch.Tensor:
    """(B_img, B_cap) word-level matching scores S (before γ3): rows images, columns captions.

    regions (B_img, D, h, w), words (B_cap, D, T), token_mask (B_cap, T) True = padding.
    """
    with torch.autocast(regions.device.type, enabled=False):
        regions, words = _fp32(regions, words)
        mask, empty = _effective_mask(token_mask)
        score = _match_pairs(regions.flatten(2), words, mask, gamma1, gamma2)
        return score.masked_fill(empty.unsqueeze(0), 0.0)


def tim(
    regions: torch.Tensor,
    words: torch.Tensor,
    token_mask: torch.Tensor,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    return_attn: bool = False,
):
    """Text-image matching score of each matched pair (the diagonal of :func:`word_scores`):
    (B,). ``return_attn`` also gives the word–region attention (B, T, h, w) (0 on padding)."""
    with torch.autocast(regions.device.type, enabled=False):
        regions, words = _fp32(regions, words)
        mask, empty = _effective_mask(token_mask)
        b, _, h, w = regions.shape
        score, attn = _match(regions.flatten(2), words, mask, gamma1, gamma2)
        score = score.masked_fill(empty, 0.0)
        if not return_attn:
            return score
        attn = attn.masked_fill(token_mask.unsqueeze(-1), 0.0)
        return score, attn.view(b, -1, h, w)


def _negatives_mask(class_ids: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
    """(n, n) True where a non-matching pair shares the class: not used as a negative
    (paper_vs_code.md R2)."""
    if class_ids is None:
        return None
    class_ids = class_ids.to(device)
    same = class_ids.unsqueeze(0) == class_ids.unsqueeze(1)
    return same & ~torch.eye(n, dtype=torch.bool, device=device)


def _two_way_ce(
    logits: torch.Tensor, class_ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    n = logits.shape[0]
    neg = _negatives_mask(class_ids, n, logits.device)
    if neg is not None:
        logits = logits.masked_fill(neg, float("-inf"))
    labels = torch.arange(n, device=logits.device)
    return F.cross_entropy(logits, labels), F.cross_entropy(logits.t(), labels)


def words_loss(
    regions: torch.Tensor,
    words: torch.Tensor,
    token_mask: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_w0: image → caption, loss_w1: caption → image), cross-entropy of γ3·S (means)."""
    scores = word_scores(regions, words, token_mask, gamma1, gamma2)
    return _two_way_ce(gamma3 * scores, class_ids)


def sentence_scores(global_feat: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """(B_img, B_cap) cosine similarity of global image and sentence features."""
    with torch.autocast(global_feat.device.type, enabled=False):
        g, s = _fp32(global_feat, sentence)
        num = g @ s.t()
        den = (g.norm(dim=1, keepdim=True) * s.norm(dim=1, keepdim=True).t()).clamp(min=1e-8)
        return num / den


def sentence_loss(
    global_feat: torch.Tensor,
    sentence: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gamma3: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _two_way_ce(gamma3 * sentence_scores(global_feat, sentence), class_ids)


def damsm_loss(
    regions: torch.Tensor,
    global_feat: torch.Tensor,
    words: torch.Tensor,
    sentence: torch.Tensor,
    token_mask: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gamma1: float = 4.0,
    gamma2: float = 5.0,
    gamma3: float = 10.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """loss_w0 + loss_w1 + loss_s0 + loss_s1 (paper_vs_code.md R2) and the four parts."""
    w0, w1 = words_loss(regions, words, token_mask, class_ids, gamma1, gamma2, gamma3)
    s0, s1 = sentence_loss(global_feat, sentence, class_ids, gamma3)
    parts = {"w0": w0, "w1": w1, "s0": s0, "s1": s1}
    return w0 + w1 + s0 + s1, parts


class DAMSM(nn.Module):
    """The pair of encoders plus γ values; ``loss(images, tokens, lengths, class_ids)``."""

    def __init__(
        self,
        text_encoder: nn.Module,
        image_encoder: nn.Module,
        gamma1: float = 4.0,
        gamma2: float = 5.0,
        gamma3: float = 10.0,
    ):
        super().__init__()
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.gamma1, self.gamma2, self.gamma3 = gamma1, gamma2, gamma3

    def loss(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        class_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        text = self.text_encoder.encode(tokens, lengths)
        regions, global_feat = self.image_encoder(images)
        return damsm_loss(
            regions, global_feat, text.words, text.sentence, text.token_mask, class_ids,
            self.gamma1, self.gamma2, self.gamma3,
        )  # fmt: skip


@dataclass
class RPrecision:
    value: float  # top-1 rate
    num_candidates: int  # candidates per query actually used (true caption included)
    num_queries: int
    note: str  # empty, or why fewer candidates than asked were used


def r_precision(
    global_feat: torch.Tensor,
    sentences: torch.Tensor,
    num_candidates: int = 100,
    seed: int = 0,
) -> RPrecision:
    """AttnGAN's R-precision: for image i, its true sentence i among ``num_candidates - 1``
    random other sentences, ranked by cosine(global image feature, sentence feature); the rate at
    which the true one ranks first (ties count for it). With fewer than ``num_candidates``
    sentences, all other sentences are used and ``note`` says so. Seeded (``seed``)."""
    n = global_feat.shape[0]
    if n < 2:
        raise ValueError("r_precision needs at least 2 image-caption pairs")
    sims = sentence_scores(global_feat, sentences).detach().cpu()  # (N, N)
    k = min(num_candidates - 1, n - 1)
    note = ""
    if k < num_candidates - 1:
        note = f"only {n} captions: each image ranked against all {n - 1} others ({k + 1} candidates, not {num_candidates})"
        warnings.warn(f"r_precision: {note}", stacklevel=2)
    gen = torch.Generator().manual_seed(seed)
    hits = 0
    for i in range(n):
        others = torch.randperm(n - 1, generator=gen)[:k]
        others = others + (others >= i).long()  # skip i
        hits += int(sims[i, i] >= sims[i, others].max())
    return RPrecision(hits / n, k + 1, n, note)
