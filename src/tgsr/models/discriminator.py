"""Text-conditioned discriminator (paper Eq. 5; paper_vs_code.md R6: AttnGAN's ``D_NET64/128/256``
generalised to any resolution).

Stem: conv4×4/2 (3 → ndf) + LeakyReLU 0.2, then conv4×4/2 + norm + LeakyReLU, doubling the
channels, down to a 4×4 code (sizes that are not powers of two stop between 4 and 7); then 3×3
convs bring the code to 8·ndf channels (AttnGAN's D128/D256 tails). Unconditional logits: a conv
over the whole code. Conditional logits: the sentence replicated spatially and concatenated with
the code → conv3 + norm + LeakyReLU → conv over the whole code. Raw logits, no sigmoid (use
BCE-with-logits).

``norm="batch"`` is AttnGAN's BatchNorm (default); ``norm="spectral"`` wraps every conv in
spectral normalisation instead and uses no BatchNorm (more stable with small batches). One
discriminator judges one resolution (``hr_size``): the loss suite applies it to the final coarse
and fine outputs, which both have that size.

``Discriminator(config, hr_size, scale, sentence_dim)`` takes its
:class:`~tgsr.config.DiscriminatorConfig` and keeps it as ``.config``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from tgsr.config import DiscriminatorConfig


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig, hr_size: int, scale: int, sentence_dim: int):
        """``hr_size``: the side of the images judged; ``sentence_dim``: the size of the
        sentence feature the conditional logits read (the DAMSM's ``feature_dim``)."""
        super().__init__()
        config.validate()
        if hr_size < 8:
            raise ValueError(f"hr_size must be >= 8, got {hr_size}")
        self.config, self.hr_size, self.scale = config, hr_size, scale
        self.sentence_dim, self.conditional = sentence_dim, config.conditional
        channels, norm = config.channels, config.norm
        sn = spectral_norm if norm == "spectral" else (lambda m: m)

        def block(i: int, o: int, k: int, s: int, p: int) -> list[nn.Module]:
            layers: list[nn.Module] = [sn(nn.Conv2d(i, o, k, s, p, bias=norm != "batch"))]
            if norm == "batch":
                layers.append(nn.BatchNorm2d(o))
            return [*layers, nn.LeakyReLU(0.2, inplace=True)]

        ndf = channels
        layers: list[nn.Module] = [sn(nn.Conv2d(3, ndf, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        size, ch = hr_size // 2, ndf
        while size >= 8 and size % 2 == 0:
            layers += block(ch, 2 * ch, 4, 2, 1)
            size, ch = size // 2, 2 * ch
        while ch > 8 * ndf:
            layers += block(ch, ch // 2, 3, 1, 1)
            ch //= 2
        if ch < 8 * ndf:
            layers += block(ch, 8 * ndf, 3, 1, 1)
        self.code_size = size
        self.encode = nn.Sequential(*layers)
        self.uncond = sn(nn.Conv2d(8 * ndf, 1, size))
        if config.conditional:
            self.joint = nn.Sequential(*block(8 * ndf + sentence_dim, 8 * ndf, 3, 1, 1))
            self.cond = sn(nn.Conv2d(8 * ndf, 1, size))

    def forward(
        self, image: torch.Tensor, sentence: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """image (B, 3, hr_size, hr_size) in [0, 1] -> (uncond (B,), cond (B,) | None)."""
        code = self.encode(image * 2 - 1)  # (B, 8ndf, s, s)
        uncond = self.uncond(code).flatten()
        if not self.conditional or sentence is None:
            return uncond, None
        s = sentence.to(code.dtype)[:, :, None, None].expand(-1, -1, *code.shape[-2:])
        joint = self.joint(torch.cat([code, s], 1))
        return uncond, self.cond(joint).flatten()
