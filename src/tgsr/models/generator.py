"""What the two TGSR generators share (paper Sec. 3.3, Fig. 2; docs/paper_vs_code.md R4).

* :class:`~tgsr.models.paper_generator.PaperGenerator` — the paper's layout (Fig. 2): a global
  branch of x2 stages with a TAM each, and a refine branch.
* :class:`~tgsr.models.released_generator.ReleasedGenerator` — the authors' released code
  (paper_vs_code.md R4): GLU blocks, the TAM before each upsampling.

:func:`tgsr.models.factory.build_generator` picks one from ``GeneratorConfig.arch``. Both take
their config dataclass (``PaperGenerator(config, scale, word_dim)``), keep it as ``.config`` and
return a :class:`GeneratorOutput`. This module holds what they share: the output record, the
checks and word conditioning before the first stage (:mod:`tgsr.models.text_conditioning`),
the residual image heads (``image_residual``: every image head predicts a residual over a
bicubic upsample of its source, not in the paper) and the refine branch's input
(``refine_input``: ``lq`` or the released ``lq - blur(lq)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from tgsr.config import GeneratorConfig
from tgsr.models.blocks import coord_channels, upsample_image
from tgsr.models.text_conditioning import MaskedBatchNorm, condition_words, word_adapter
from tgsr.ops import lowpass


@dataclass
class GeneratorOutput:
    sr: torch.Tensor  # (B, 3, H, W) final output (fine[-1])
    coarse: list[torch.Tensor]  # global branch, k = 1..n: (B, 3, h·2^k, w·2^k)
    fine: list[torch.Tensor]  # refine branch (== coarse without the refine branch)
    attn: list[torch.Tensor] = field(default_factory=list)  # (B, T, h_k, w_k), one per TAM


class GeneratorBase(nn.Module):
    """The part of ``__init__`` / ``forward`` both layouts share; subclasses set ``arch``."""

    arch: ClassVar[str]

    def __init__(self, config: GeneratorConfig, scale: int, word_dim: int):
        super().__init__()
        config.validate()
        if config.arch != self.arch:
            raise ValueError(
                f"{type(self).__name__} is arch={self.arch!r}, the config says "
                f"{config.arch!r} (build_generator picks the class)"
            )
        n = int(round(math.log2(scale)))
        if scale < 2 or 2**n != scale:
            raise ValueError(f"scale must be a power of 2 >= 2, got {scale}")
        self.config, self.scale, self.word_dim, self.num_stages = config, scale, word_dim, n
        self.coords = "coords" in config.position_code  # x/y channels on the LR input
        # text-conditioning additions (not in the paper), built only when asked for
        self.word_norm = MaskedBatchNorm(word_dim) if config.word_norm else None
        self.word_adapter = word_adapter(word_dim) if config.word_adapter == "mlp" else None

    @property
    def use_text(self) -> bool:
        return self.config.use_text

    @property
    def coarse_to_fine(self) -> bool:
        return self.config.coarse_to_fine

    def condition(
        self, words: torch.Tensor | None, token_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The words the TAMs see: checked, then through the text-conditioning additions."""
        if self.use_text and words is None:
            raise ValueError("this generator uses text: pass words (and token_mask)")
        return condition_words(words, token_mask, self.word_norm, self.word_adapter)

    def add_coords(self, x: torch.Tensor, frame=None) -> torch.Tensor:
        """x/y coordinate channels appended to the LR input (``position_code`` "coords...");
        ``frame``: the forward's ``coord_frame`` (:func:`~tgsr.models.blocks.coord_channels`)."""
        return torch.cat([x, coord_channels(x, frame)], 1) if self.coords else x

    def add_base(self, residual: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """An image head's output over bicubic(source) (``image_residual``), else as it is."""
        if not self.config.image_residual:
            return residual
        return residual + upsample_image(source, residual.shape[-2:])

    def refine_source(self, x: torch.Tensor) -> torch.Tensor:
        """The refine branch's input: ``x`` or its high-pass ``x - lowpass(x, 2)``."""
        if self.config.refine_input == "highpass":
            return x - lowpass(x, 2.0)
        return x
