"""Coarse-to-fine TGSR generator (paper §3.3, Fig. 2) and the released-code layout
(docs/paper_vs_code.md R4).

``arch="paper"`` — per ×2 stage k = 1..log2(scale) of the **global branch**:
``[residual blocks] → deconv 6×6/2 (+act) → F_im_k → TAM(F_im_k) → concat(F_im_k, F_attn_k)
→ conv3 + act → G_k``; a 3×3 conv on G_k gives the coarse image of the stage, and the next stage
starts from G_k (paper: "concatenated and delivered to a convolution layer, a residual block, and
a deconvolution layer"). The **refine branch** extracts features of the LR input (conv3 + act +
residual blocks), then per stage: deconv (+act) → concat with G_k ("cascaded") → conv3 + act →
3×3 conv to the fine image of the stage; the final SR is fine[-1].

Additions beyond the paper, all flags: every image head predicts a **residual over a bicubic
upsample of lq** (``image_residual``, on by default: training starts from bicubic instead of from
grey, which speeds training up a lot); ``activation="leaky_relu"`` (0.2); ``coord_channels``
(x/y coordinates appended to the LR input of the global branch so attention can tell left from
right); ``text_fusion="concat_mul"`` (concat(F_im, F_attn, F_im·F_attn): a multiplicative
binding term).

``arch="released"`` (paper_vs_code.md R4): 32-channel BatchNorm + GLU blocks, nearest-upsample conv
blocks, the TAM **before** each upsampling (maps at half the stage's output resolution), global
heads 3×3 conv without bias or activation, refine branch on ``lq - blur(lq)`` (with
``refine_input="highpass"``) with ``refine_res_blocks`` (released: 6) GLU residual blocks at the LR
size, plain 2-conv blocks between scales, one 5×5 conv + tanh head shared by all scales and
``fine_k = tanh(head(f_k)) + 0.5·coarse_k``. It computes in [-1, 1] inside (as released) and
returns [0, 1]. For ×16 every stage has its own modules: the released ×16 code's weight sharing
across stages is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from tgsr.data.degradations import lowpass
from tgsr.models.attention import TextAttention
from tgsr.models.blocks import (
    GLUConvBlock,
    ResidualBlock,
    conv3,
    coord_channels,
    deconv_x2,
    glu_conv,
    glu_up_block,
    image_head,
    make_activation,
    subpixel_channels,
    upsample_image,
)

_FUSION_WIDTH = {"concat": 2, "concat_mul": 3}


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


@dataclass
class GeneratorOutput:
    sr: torch.Tensor  # (B, 3, H, W) final output (fine[-1])
    coarse: list[torch.Tensor]  # global branch, k = 1..n: (B, 3, h·2^k, w·2^k)
    fine: list[torch.Tensor]  # refine branch (== coarse without the refine branch)
    attn: list[torch.Tensor] = field(default_factory=list)  # (B, T, h_k, w_k), one per TAM


class Generator(nn.Module):
    def __init__(
        self,
        scale: int,
        word_dim: int = 256,
        arch: str = "paper",
        channels: int = 64,
        num_res_blocks: int = 1,
        refine_res_blocks: int = 1,
        use_text: bool = True,
        coarse_to_fine: bool = True,
        activation: str = "relu",
        coord_channels: bool = False,
        subpixel_coords: bool = False,
        word_norm: bool = False,
        word_adapter: str = "none",
        sentence_cond: bool = False,
        text_fusion: str = "concat",
        refine_input: str = "lq",
        image_residual: bool = True,
    ):
        super().__init__()
        self.config = {
            "scale": scale, "word_dim": word_dim, "arch": arch, "channels": channels,
            "num_res_blocks": num_res_blocks, "refine_res_blocks": refine_res_blocks,
            "use_text": use_text, "coarse_to_fine": coarse_to_fine, "activation": activation,
            "coord_channels": coord_channels, "subpixel_coords": subpixel_coords,
            "word_norm": word_norm, "word_adapter": word_adapter, "sentence_cond": sentence_cond,
            "text_fusion": text_fusion,
            "refine_input": refine_input, "image_residual": image_residual,
        }  # fmt: skip
        n = int(round(math.log2(scale)))
        if scale < 2 or 2**n != scale:
            raise ValueError(f"scale must be a power of 2 >= 2, got {scale}")
        if arch == "released" and text_fusion != "concat":
            raise ValueError("arch='released' supports text_fusion='concat' only")
        self.scale, self.num_stages, self.arch = scale, n, arch
        self.use_text, self.coarse_to_fine = use_text, coarse_to_fine
        self.coord_channels, self.text_fusion = coord_channels, text_fusion
        self.subpixel_coords = subpixel_coords
        # frozen DAMSM word features share a large common component and the fill-specific
        # directions have a small variance: standardising each feature over the real words
        # (batch statistics in training, running statistics at inference) lets the TAM see
        # them; measured in docs/quickstart.md
        self.word_norm = MaskedBatchNorm(word_dim) if (word_norm and use_text) else None
        # the sentence feature holds the whole caption at full strength, where the attended
        # word mixture dilutes it: standardised, it modulates every stage's features (FiLM)
        self.sentence_cond = sentence_cond and use_text
        self.sentence_norm = nn.BatchNorm1d(word_dim, momentum=0.05) if self.sentence_cond else None
        if self.sentence_cond and arch != "paper":
            raise ValueError("sentence_cond is implemented for arch='paper'")
        # a trainable per-word MLP between the text encoder and the TAMs: the generator can
        # re-map contextual word features (e.g. "the first colour named") to what it draws
        self.word_adapter = None
        if word_adapter == "mlp" and use_text:
            self.word_adapter = nn.Sequential(
                nn.Linear(word_dim, word_dim), nn.LeakyReLU(0.2), nn.Linear(word_dim, word_dim)
            )
        elif word_adapter not in ("none", "mlp"):
            raise ValueError(f"unknown word_adapter {word_adapter!r}")
        if subpixel_coords and arch != "paper":
            raise ValueError("subpixel_coords is implemented for arch='paper'")
        self.refine_input, self.image_residual = refine_input, image_residual
        in_ch = 3 + (2 if coord_channels else 0)
        if arch == "paper":
            self._build_paper(
                in_ch, word_dim, channels, num_res_blocks, refine_res_blocks, activation
            )
        elif arch == "released":
            self._build_released(in_ch, word_dim, channels, num_res_blocks, refine_res_blocks)
        else:
            raise ValueError(f"unknown generator arch {arch!r}")

    # ------------------------------------------------------------------ paper layout
    def _build_paper(self, in_ch, word_dim, c, num_res, refine_res, activation):
        def act():
            return make_activation(activation)

        self.head = nn.Sequential(conv3(in_ch, c), act())
        self.stages = nn.ModuleList()
        for k in range(1, self.num_stages + 1):
            st = nn.Module()
            st.res = nn.Sequential(*[ResidualBlock(c, activation) for _ in range(num_res)])
            st.up = nn.Sequential(deconv_x2(c, c), act())
            width = c
            if self.use_text:
                st.tam = TextAttention(c, word_dim)
                width = _FUSION_WIDTH[self.text_fusion] * c
            if self.subpixel_coords:
                st.pos = nn.Conv2d(4 * k, c, 1)
            if self.sentence_cond:
                st.sent = nn.Linear(word_dim, 2 * c)  # FiLM: scale and shift
            st.fuse = nn.Sequential(conv3(width, c), act())
            st.to_image = image_head(c)
            self.stages.append(st)
        if self.coarse_to_fine:
            self.refine_head = nn.Sequential(
                conv3(3, c), act(), *[ResidualBlock(c, activation) for _ in range(refine_res)]
            )
            self.refine_stages = nn.ModuleList()
            for k in range(1, self.num_stages + 1):
                st = nn.Module()
                st.up = nn.Sequential(deconv_x2(c, c), act())
                if self.subpixel_coords:
                    st.pos = nn.Conv2d(4 * k, c, 1)
                st.fuse = nn.Sequential(conv3(2 * c, c), act())
                st.to_image = image_head(c)
                self.refine_stages.append(st)

    def _add_position(self, st: nn.Module, f: torch.Tensor, stage: int) -> torch.Tensor:
        """Add the projected sub-pixel position code to the features (before the TAM, so its
        queries and the multiplicative fusion term see the phase inside each LR pixel)."""
        if not self.subpixel_coords:
            return f
        return f + st.pos(subpixel_channels(f, 2**stage))

    def _forward_paper(self, lq, words, token_mask, sentence=None):
        x = torch.cat([lq, coord_channels(lq)], 1) if self.coord_channels else lq
        f = self.head(x)
        coarse, feats, attn = [], [], []
        for k, st in enumerate(self.stages, start=1):
            f = self._add_position(st, st.up(st.res(f)), k)
            if sentence is not None:  # FiLM: multiplicative, so the phase code meets the text
                s_in = sentence.to(st.sent.weight.dtype)  # float32 from the norm; bf16 model
                gamma, beta = st.sent(s_in)[:, :, None, None].to(f.dtype).chunk(2, dim=1)
                f = f * (1 + gamma) + beta
            parts = [f]
            if self.use_text:
                attended, a = st.tam(f, words, token_mask)
                parts.append(attended)
                if self.text_fusion == "concat_mul":
                    parts.append(f * attended)
                attn.append(a)
            f = st.fuse(torch.cat(parts, 1))
            feats.append(f)
            coarse.append(self._add_base(st.to_image(f), lq))
        if not self.coarse_to_fine:
            return coarse, list(coarse), attn
        r = self.refine_head(self._refine_source(lq))
        fine = []
        for k, (st, g) in enumerate(zip(self.refine_stages, feats, strict=True), start=1):
            r = st.fuse(torch.cat([self._add_position(st, st.up(r), k), g], 1))
            fine.append(self._add_base(st.to_image(r), lq))
        return coarse, fine, attn

    # ------------------------------------------------------------------ released layout
    def _build_released(self, in_ch, word_dim, c, num_res, refine_res):
        self.im2f = glu_conv(in_ch, c)
        width = 2 * c if self.use_text else c
        self.stages = nn.ModuleList()
        for _ in range(self.num_stages):
            st = nn.Module()
            if self.use_text:
                st.tam = TextAttention(c, word_dim)
            st.res = nn.Sequential(*[GLUConvBlock(width) for _ in range(num_res)])
            st.up = glu_up_block(width, c)
            st.to_image = nn.Conv2d(c, 3, 3, 1, 1, bias=False)
            self.stages.append(st)
        if self.coarse_to_fine:
            self.convin = glu_conv(3, c)
            self.refine_res = nn.Sequential(*[GLUConvBlock(c) for _ in range(refine_res)])
            self.refine_blocks = nn.ModuleList(
                [nn.Identity()] + [GLUConvBlock(c, skip=False) for _ in range(self.num_stages - 1)]
            )
            self.refine_ups = nn.ModuleList([glu_up_block(c, c) for _ in range(self.num_stages)])
            self.refine_out = nn.Conv2d(c, 3, 5, 1, 2, bias=False)  # shared by every scale

    def _forward_released(self, lq, words, token_mask):
        x = lq * 2 - 1
        h = self.im2f(torch.cat([x, coord_channels(x)], 1) if self.coord_channels else x)
        coarse, attn = [], []
        for st in self.stages:
            if self.use_text:
                attended, a = st.tam(h, words, token_mask)
                h = torch.cat([h, attended], 1)
                attn.append(a)
            h = st.up(st.res(h))
            coarse.append(self._add_base(st.to_image(h), x))
        fine = coarse
        if self.coarse_to_fine:
            r = self.refine_res(self.convin(self._refine_source(x)))
            fine = []
            for block, up, img in zip(self.refine_blocks, self.refine_ups, coarse, strict=True):
                r = up(block(r))
                fine.append(torch.tanh(self.refine_out(r)) + 0.5 * img)
        coarse = [(y + 1) / 2 for y in coarse]
        fine = [(y + 1) / 2 for y in fine] if self.coarse_to_fine else list(coarse)
        return coarse, fine, attn

    # ------------------------------------------------------------------ shared
    def _add_base(self, residual: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        if not self.image_residual:
            return residual
        return residual + upsample_image(source, residual.shape[-2:])

    def _refine_source(self, x: torch.Tensor) -> torch.Tensor:
        if self.refine_input == "highpass":
            return x - lowpass(x, 2.0)
        return x

    def forward(
        self,
        lq: torch.Tensor,
        words: torch.Tensor | None = None,
        sentence: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> GeneratorOutput:
        """lq (B, 3, h, w) in [0, 1]; words (B, D, T), token_mask (B, T) True = padding.
        ``sentence`` (B, D) is used with ``sentence_cond``; without ``use_text`` all text
        arguments are ignored."""
        if self.use_text and words is None:
            raise ValueError("this generator uses text: pass words (and token_mask)")
        if self.word_norm is not None or self.word_adapter is not None:
            w = words.transpose(1, 2)  # (B, T, D)
            if self.word_norm is not None:
                w = self.word_norm(w, token_mask)
            if self.word_adapter is not None:
                w = w + self.word_adapter(w)
            words = w.transpose(1, 2)
        if self.arch == "paper":
            s = None
            if self.sentence_cond:
                if sentence is None:
                    raise ValueError("this generator is sentence-conditioned: pass sentence")
                s = self.sentence_norm(sentence.float())
                if token_mask is not None:  # an empty caption conditions on nothing
                    s = s * (~token_mask.all(dim=1, keepdim=True)).to(s.dtype)
            coarse, fine, attn = self._forward_paper(lq, words, token_mask, s)
        else:
            coarse, fine, attn = self._forward_released(lq, words, token_mask)
        return GeneratorOutput(sr=fine[-1], coarse=coarse, fine=fine, attn=attn)
