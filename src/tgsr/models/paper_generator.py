"""The paper's coarse-to-fine generator (paper Sec. 3.3, Fig. 2).

**Global branch** (Fig. 2, top), per x2 stage k = 1..log2(scale), :class:`GlobalStage`:
``[residual blocks] -> deconv 6x6/2 (+act) -> F_im_k -> TAM(F_im_k, words) = F_attn_k (Eq. 2)
-> concat(F_im_k, F_attn_k) -> conv3 + act -> G_k``; a 3x3 conv on G_k gives the coarse image
of the stage and the next stage starts from G_k (paper: "concatenated and delivered to a
convolution layer, a residual block, and a deconvolution layer").

**Refine branch** (Fig. 2, bottom), :class:`RefineStage`: features of the LR input (conv3 + act +
residual blocks), then per stage: deconv (+act) -> concat with G_k ("cascaded") -> conv3 + act
-> 3x3 conv to the fine image of the stage; the SR output is the last fine image.

Additions beyond the paper, each a ``GeneratorConfig`` key (docs/paper_vs_code.md):
``image_residual`` (on by default; :mod:`tgsr.models.generator`), ``activation="leaky_relu"``,
``position_code`` (x/y coordinate channels on the LR input; a sub-pixel phase code added after
each deconvolution, before the TAM), ``tam_coords`` (the TAM's query sees the pixel's x/y in the
whole image) and the text-conditioning options of
:mod:`tgsr.models.text_conditioning` (``word_norm``, ``word_adapter``, ``text_fusion``).
"""

from __future__ import annotations

import torch
from torch import nn

from tgsr.config import GeneratorConfig
from tgsr.models.attention import TextAttention
from tgsr.models.blocks import (
    ResidualBlock,
    conv3,
    conv_of_cat,
    coord_channels,
    deconv_x2,
    image_head,
    make_activation,
    subpixel_channels,
)
from tgsr.models.generator import GeneratorBase, GeneratorOutput
from tgsr.models.text_conditioning import FUSION_WIDTH, fuse_text


def _up(cfg: GeneratorConfig) -> nn.Sequential:
    return nn.Sequential(deconv_x2(cfg.channels, cfg.channels), make_activation(cfg.activation))


def _position(cfg: GeneratorConfig, stage: int) -> nn.Conv2d | None:
    return nn.Conv2d(4 * stage, cfg.channels, 1) if "subpixel" in cfg.position_code else None


def _add_position(pos: nn.Conv2d | None, f: torch.Tensor, factor: int) -> torch.Tensor:
    """f + the projected sub-pixel phase code (``position_code`` "...subpixel"), else f;
    without autograd added into f in place (f is the fresh output of the up-sampling)."""
    if pos is None:
        return f
    code = pos(subpixel_channels(f, factor))
    return f + code if torch.is_grad_enabled() else f.add_(code)


def _stage_coords(f: torch.Tensor, frame, factor: int) -> torch.Tensor:
    """(B, 2, H, W) x/y of each pixel of stage features ``f`` (``factor`` x the LR) in the whole
    image; ``frame``: the forward's LR ``coord_frame`` (None: ``f`` is the whole image)."""
    if frame is not None:
        frame = torch.as_tensor(frame, device=f.device) * factor
    return coord_channels(f, frame)


def _fuse(fuse: nn.Sequential, parts: list[torch.Tensor], training: bool) -> torch.Tensor:
    """``fuse`` (conv3 + act) on the concatenation of ``parts``. In eval mode without the
    concatenated copy (:func:`~tgsr.models.blocks.conv_of_cat`: less memory and time at
    inference); training keeps the single convolution (its numbers are the measured ones)."""
    if training:
        return fuse(torch.cat(parts, 1))
    return fuse[1](conv_of_cat(fuse[0], parts))


class GlobalStage(nn.Module):
    """Stage k of the global branch: F_im_k = deconv(res(G_{k-1})); G_k = conv3(concat(F_im_k,
    TAM(F_im_k))). Without text (the paper's baseline rows) G_k = conv3(F_im_k)."""

    def __init__(self, cfg: GeneratorConfig, stage: int, word_dim: int):
        super().__init__()
        c = cfg.channels
        self.factor, self.text_fusion = 2**stage, cfg.text_fusion
        blocks = [ResidualBlock(c, cfg.activation) for _ in range(cfg.num_res_blocks)]
        self.res = nn.Sequential(*blocks)
        self.up = _up(cfg)
        self.tam_coords = cfg.tam_coords
        self.tam = TextAttention(c, word_dim, 2 if cfg.tam_coords else 0) if cfg.use_text else None
        self.pos = _position(cfg, stage)
        width = FUSION_WIDTH[cfg.text_fusion] * c if cfg.use_text else c
        self.fuse = nn.Sequential(conv3(width, c), make_activation(cfg.activation))
        self.to_image = image_head(c)  # G_k -> the coarse image of the stage

    def forward(
        self, g, words, token_mask, coord_frame=None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """G_{k-1} (B, C, h, w) -> (G_k (B, C, 2h, 2w), [TAM word maps (B, T, 2h, 2w)]);
        ``coord_frame``: the LR frame (``tam_coords``; see ``PaperGenerator.forward``)."""
        f = _add_position(self.pos, self.up(self.res(g)), self.factor)  # F_im_k
        if self.tam is None:  # (a cat of one tensor: the same copy the layout has always made)
            return self.fuse(torch.cat([f], 1)), []
        xy = _stage_coords(f, coord_frame, self.factor) if self.tam_coords else None
        attended, attn = self.tam(f, words, token_mask, xy)  # F_attn_k, Eq. 2
        return _fuse(self.fuse, fuse_text(f, attended, self.text_fusion), self.training), [attn]


class RefineStage(nn.Module):
    """Stage k of the refine branch: R_k = conv3(concat(deconv(R_{k-1}), G_k))."""

    def __init__(self, cfg: GeneratorConfig, stage: int):
        super().__init__()
        c = cfg.channels
        self.factor = 2**stage
        self.up = _up(cfg)
        self.pos = _position(cfg, stage)
        self.fuse = nn.Sequential(conv3(2 * c, c), make_activation(cfg.activation))
        self.to_image = image_head(c)  # R_k -> the fine image of the stage

    def forward(self, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        up = _add_position(self.pos, self.up(r), self.factor)
        return _fuse(self.fuse, [up, g], self.training)


class PaperGenerator(GeneratorBase):
    """Fig. 2: ``PaperGenerator(cfg.generator, scale, word_dim)``; ``forward`` -> coarse images
    (global branch), fine images (refine branch), TAM word maps."""

    arch = "paper"

    def __init__(self, config: GeneratorConfig, scale: int, word_dim: int):
        super().__init__(config, scale, word_dim)
        c, act = config.channels, config.activation
        stages = range(1, self.num_stages + 1)
        in_ch = 3 + (2 if self.coords else 0)
        self.head = nn.Sequential(conv3(in_ch, c), make_activation(act))
        self.stages = nn.ModuleList([GlobalStage(config, k, word_dim) for k in stages])
        if config.coarse_to_fine:
            self.refine_head = nn.Sequential(
                conv3(3, c),
                make_activation(act),
                *[ResidualBlock(c, act) for _ in range(config.refine_res_blocks)],
            )
            self.refine_stages = nn.ModuleList([RefineStage(config, k) for k in stages])

    def forward(
        self,
        lq: torch.Tensor,
        words: torch.Tensor | None = None,
        sentence: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        coord_frame: torch.Tensor | tuple[int, int, int, int] | None = None,
        sr_only: bool = False,
    ) -> GeneratorOutput:
        """lq (B, 3, h, w) in [0, 1]; words (B, D, T), token_mask (B, T) True = padding.
        ``sentence`` is not used (one call signature for every generator); without
        ``use_text`` every text argument is ignored. ``coord_frame``: where ``lq`` lies in the
        whole LR image, ``(y0, x0, H, W)`` or ``(B, 4)`` (tiles; used by ``position_code``
        "coords..." and ``tam_coords``, ignored otherwise; None: ``lq`` is the whole image). ``sr_only``
        (inference): only the image heads that ``sr`` needs run, so ``coarse`` is empty and
        ``fine`` is ``[sr]`` (``sr`` and ``attn`` are the same as without it)."""
        words = self.condition(words, token_mask)
        g = self.head(self.add_coords(lq, coord_frame))
        feats, coarse, attn = [], [], []  # G_k, coarse image k, TAM maps k
        last = len(self.stages) - 1
        for k, stage in enumerate(self.stages):  # global branch
            g, maps = stage(g, words, token_mask, coord_frame)
            feats.append(g)
            if not sr_only or (k == last and not self.coarse_to_fine):
                coarse.append(self.add_base(stage.to_image(g), lq))
            attn += maps
        if not self.coarse_to_fine:
            kept = [] if sr_only else coarse
            return GeneratorOutput(sr=coarse[-1], coarse=kept, fine=list(coarse), attn=attn)
        r, fine = self.refine_head(self.refine_source(lq)), []
        for k, (stage, g) in enumerate(zip(self.refine_stages, feats, strict=True)):  # refine
            r = stage(r, g)
            if not sr_only or k == last:
                fine.append(self.add_base(stage.to_image(r), lq))
        return GeneratorOutput(sr=fine[-1], coarse=coarse, fine=fine, attn=attn)
