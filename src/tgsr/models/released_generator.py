"""The generator of the authors' released code (docs/paper_vs_code.md R4).

32-channel BatchNorm + GLU blocks, nearest-upsample conv blocks, the TAM **before** each
upsampling (its maps are at half the stage's output resolution), global heads a 3x3 conv without
bias or activation, a refine branch on ``lq`` or ``lq - blur(lq)`` (``refine_input="highpass"``)
with ``refine_res_blocks`` (released: 6) GLU residual blocks at the LR size, plain 2-conv blocks
between scales, one 5x5 conv + tanh head shared by all scales and
``fine_k = tanh(head(f_k)) + 0.5 * coarse_k``. It computes in [-1, 1] inside (as released) and
returns [0, 1]. For x16 every stage has its own modules: the released x16 code's weight sharing
across stages is not reproduced. Always has the refine branch; ``text_fusion`` is "concat" and
``position_code`` "none" or "coords" (``GeneratorConfig.validate``).
"""

from __future__ import annotations

import torch
from torch import nn

from tgsr.config import GeneratorConfig
from tgsr.models.attention import TextAttention
from tgsr.models.blocks import GLUConvBlock, glu_conv, glu_up_block
from tgsr.models.generator import GeneratorBase, GeneratorOutput


class ReleasedStage(nn.Module):
    """h -> TAM -> concat(h, attended) -> GLU residual blocks -> upBlock -> h (x2)."""

    def __init__(self, cfg: GeneratorConfig, word_dim: int):
        super().__init__()
        c = cfg.channels
        width = 2 * c if cfg.use_text else c
        self.tam = TextAttention(c, word_dim) if cfg.use_text else None
        self.res = nn.Sequential(*[GLUConvBlock(width) for _ in range(cfg.num_res_blocks)])
        self.up = glu_up_block(width, c)
        self.to_image = nn.Conv2d(c, 3, 3, 1, 1, bias=False)

    def forward(self, h, words, token_mask) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps = []
        if self.tam is not None:
            attended, attn = self.tam(h, words, token_mask)
            h = torch.cat([h, attended], 1)
            maps.append(attn)
        return self.up(self.res(h)), maps


class ReleasedGenerator(GeneratorBase):
    """``ReleasedGenerator(cfg.generator, scale, word_dim)`` (``cfg.generator.arch="released"``)."""

    arch = "released"

    def __init__(self, config: GeneratorConfig, scale: int, word_dim: int):
        super().__init__(config, scale, word_dim)
        c, n = config.channels, self.num_stages
        self.im2f = glu_conv(3 + (2 if self.coords else 0), c)
        self.stages = nn.ModuleList([ReleasedStage(config, word_dim) for _ in range(n)])
        self.convin = glu_conv(3, c)
        self.refine_res = nn.Sequential(*[GLUConvBlock(c) for _ in range(config.refine_res_blocks)])
        self.refine_blocks = nn.ModuleList(
            [nn.Identity()] + [GLUConvBlock(c, skip=False) for _ in range(n - 1)]
        )
        self.refine_ups = nn.ModuleList([glu_up_block(c, c) for _ in range(n)])
        self.refine_out = nn.Conv2d(c, 3, 5, 1, 2, bias=False)  # shared by every scale

    def forward(
        self,
        lq: torch.Tensor,
        words: torch.Tensor | None = None,
        sentence: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        coord_frame: torch.Tensor | tuple[int, int, int, int] | None = None,
        sr_only: bool = False,
    ) -> GeneratorOutput:
        """As :meth:`PaperGenerator.forward`; ``sentence`` is not used. ``sr_only`` changes
        nothing here: every refine stage reads its coarse image."""
        words = self.condition(words, token_mask)
        x = lq * 2 - 1
        h = self.im2f(self.add_coords(x, coord_frame))
        coarse, attn = [], []
        for stage in self.stages:
            h, maps = stage(h, words, token_mask)
            coarse.append(self.add_base(stage.to_image(h), x))
            attn += maps
        r = self.refine_res(self.convin(self.refine_source(x)))
        fine = []
        for block, up, img in zip(self.refine_blocks, self.refine_ups, coarse, strict=True):
            r = up(block(r))
            fine.append(torch.tanh(self.refine_out(r)) + 0.5 * img)
        coarse = [(y + 1) / 2 for y in coarse]
        fine = [(y + 1) / 2 for y in fine]
        return GeneratorOutput(sr=fine[-1], coarse=coarse, fine=fine, attn=attn)
