"""LossSuite: the paper's objective (Eq. 3–4) built from the active terms only.

    L = λ_L2·L2(coarse, low-pass GT) + λ_TAR·TAR(fine, GT)
        + Σ_{I ∈ {coarse[-1], fine[-1]}} [λ_cGAN·cGAN(I, t) + λ_TIC·TIC(I, t)]
        (+ λ_fine_l2·L2(fine, GT) + λ_lr·‖degrade(sr) − lq‖²: not in the paper, off by default)

* ``l2``: Σ over pyramid levels. With the refine branch: coarse vs the low-pass GT pyramid
  (paper §3.4). Without it: coarse (== fine) vs the GT pyramid — every level is supervised, so
  every image head gets a gradient.
* ``tic``: DAMSM word + sentence loss (both directions, same-class negatives masked) of the
  image against its own caption, with the frozen DAMSM encoders; γ from ``DAMSMConfig``.
* ``cgan``: BCE-with-logits on the discriminator's unconditional + conditional logits. One
  discriminator for the final resolution judges coarse[-1] and fine[-1] (just sr without the
  refine branch). D side (paper_vs_code.md R6): ½·[real_u + real_c] + ⅓·[fake_u + fake_c +
  wrong_c], the fake terms averaged over the judged images, "wrong" = real images with the next
  sample's sentence. Without conditional logits: real_u + fake_u.

A term with weight 0 is never computed and is absent from ``terms``; the caller builds the
discriminator only when ``uses_discriminator`` and loads the image encoder only when
``uses_image_encoder``. The image encoder must be frozen (eval mode, no grad on its parameters);
gradients flow through it to the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tgsr.config import DAMSMConfig, GeneratorConfig, LossConfig
from tgsr.data.degradations import degrade
from tgsr.losses.terms import bce_logits, pyramid_l2, tar_loss
from tgsr.models.damsm import damsm_loss
from tgsr.models.generator import GeneratorOutput
from tgsr.models.text_encoder import TextFeatures

TERMS = ("l2", "fine_l2", "tar", "tic", "cgan", "lr_consistency")


def _num(x: torch.Tensor | float) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


class LossSuite:
    def __init__(
        self,
        loss_cfg: LossConfig,
        generator_cfg: GeneratorConfig,
        damsm_cfg: DAMSMConfig | None = None,
        degradation: str = "bicubic",
    ):
        self.cfg = loss_cfg
        self.weights = {
            name: float(getattr(loss_cfg, name)) for name in TERMS if getattr(loss_cfg, name) > 0
        }
        self.coarse_to_fine = generator_cfg.coarse_to_fine
        self.degradation = degradation
        damsm_cfg = damsm_cfg or DAMSMConfig()
        self.gammas = (damsm_cfg.gamma1, damsm_cfg.gamma2, damsm_cfg.gamma3)
        needs_text = [t for t in ("tar", "tic") if t in self.weights]
        if needs_text and not generator_cfg.use_text:
            raise ValueError(f"loss terms {needs_text} need a generator with use_text=true")
        needs_refine = [t for t in ("tar", "fine_l2") if t in self.weights]
        if needs_refine and not self.coarse_to_fine:
            raise ValueError(
                f"loss terms {needs_refine} need the refine branch (coarse_to_fine=true)"
            )

    @property
    def terms(self) -> list[str]:
        return list(self.weights)

    @property
    def uses_discriminator(self) -> bool:
        return "cgan" in self.weights

    @property
    def uses_image_encoder(self) -> bool:
        return "tic" in self.weights

    @property
    def semantic_terms(self) -> list[str]:
        return [t for t in ("tic", "cgan") if t in self.weights]

    def semantic_factor(self, step: int | None) -> float:
        """Multiplier of λ_TIC and λ_cGAN at generator step ``step`` (1-based; None: 1):
        0 for the first ``semantic_start`` steps, then a linear ramp over ``semantic_ramp``."""
        if step is None:
            return 1.0
        done = step - self.cfg.semantic_start
        if done <= 0:
            return 0.0
        return min(1.0, done / self.cfg.semantic_ramp) if self.cfg.semantic_ramp else 1.0

    def trains_discriminator(self, step: int | None) -> bool:
        return self.uses_discriminator and self.semantic_factor(step) > 0

    def judged_images(self, out: GeneratorOutput) -> list[torch.Tensor]:
        """The images cGAN and TIC apply to: coarse[-1] and fine[-1] (paper Eq. 4)."""
        return [out.coarse[-1], out.fine[-1]] if self.coarse_to_fine else [out.sr]

    # ------------------------------------------------------------------ generator side
    def generator_loss(
        self,
        out: GeneratorOutput,
        batch: dict,
        gt_levels: Sequence[torch.Tensor],
        lowpass_levels: Sequence[torch.Tensor] | None = None,
        text: TextFeatures | None = None,
        damsm_image_encoder: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        step: int | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted total and the unweighted value of every active term (floats). ``step``
        (1-based) schedules TIC / cGAN (``semantic_start`` / ``semantic_ramp``)."""
        w = dict(self.weights)
        factor = self.semantic_factor(step)
        for name in self.semantic_terms:
            if factor == 0:
                del w[name]
            else:
                w[name] *= factor
        if self.cfg.balance == "image" and any(t in w for t in self.semantic_terms):
            return self._balanced_loss(
                out, batch, gt_levels, lowpass_levels, text, damsm_image_encoder, discriminator, w
            )
        return self._weighted_sum(
            out, batch, gt_levels, lowpass_levels, text, damsm_image_encoder, discriminator, w
        )

    def _weighted_sum(
        self, out, batch, gt_levels, lowpass_levels, text, image_encoder, discriminator, w
    ) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {}
        pixel_weight = batch.get("weight")  # recoloured pixels (data.recolour_loss_weight)
        if "l2" in w:
            if self.coarse_to_fine:
                if lowpass_levels is None:
                    raise ValueError("loss.l2 with the refine branch needs lowpass_levels")
                parts["l2"] = pyramid_l2(out.coarse, lowpass_levels, pixel_weight)
            else:
                parts["l2"] = pyramid_l2(out.coarse, gt_levels, pixel_weight)
        if "fine_l2" in w:
            parts["fine_l2"] = pyramid_l2(out.fine, gt_levels, pixel_weight)
        if "tar" in w:
            mask = text.token_mask if text is not None else None
            parts["tar"] = tar_loss(out.fine, gt_levels, out.attn, mask, self.cfg.tar_mode,
                                    self.cfg.tar_topk, pixel_weight)  # fmt: skip
        if "tic" in w:
            parts["tic"] = self._tic(self.judged_images(out), batch, text, image_encoder)
        if "cgan" in w:
            parts["cgan"] = self._cgan(self.judged_images(out), text, discriminator)
        if "lr_consistency" in w:
            lq = batch["lq"]
            scale = out.sr.shape[-1] // lq.shape[-1]
            down = degrade(out.sr.float(), scale, self.degradation)
            parts["lr_consistency"] = torch.mean((down - lq.float()) ** 2)
        total = sum(w[name] * value for name, value in parts.items())
        logs = {name: _num(value) for name, value in parts.items()}
        logs["g_total"] = _num(total)
        return total, logs

    def _tic(self, images, batch, text, image_encoder) -> torch.Tensor:
        if image_encoder is None or text is None:
            raise ValueError("loss.tic needs the DAMSM image encoder and the text features")
        g1, g2, g3 = self.gammas
        tic = 0.0
        for img in images:
            regions, glob = image_encoder(img)
            loss, _ = damsm_loss(
                regions, glob, text.words.detach(), text.sentence.detach(), text.token_mask,
                batch.get("class_id"), g1, g2, g3,
            )  # fmt: skip
            tic = tic + loss
        return tic

    def _cgan(self, images, text, discriminator) -> torch.Tensor:
        if discriminator is None:
            raise ValueError("loss.cgan needs the discriminator")
        sentence = text.sentence.detach() if text is not None else None
        adv = 0.0
        for img in images:
            uncond, cond = discriminator(img, sentence)
            adv = adv + bce_logits(uncond, 1.0)
            if cond is not None:
                adv = adv + bce_logits(cond, 1.0)
        return adv

    def _balanced_loss(
        self, out, batch, gt_levels, lowpass_levels, text, image_encoder, discriminator, w
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``balance: image``: the pixel terms as usual; each semantic term's gradient at every
        judged image is computed on a detached copy, scaled per sample to at most
        ``balance_ratio`` x the pixel gradient's norm there, and injected into the graph as
        Σ image · g (whose gradient is g). Logs ``<term>_gain``: the mean scale applied."""
        pixel = {k: v for k, v in w.items() if k not in self.semantic_terms}
        total, logs = self._weighted_sum(
            out, batch, gt_levels, lowpass_levels, text, None, None, pixel
        )
        judged = self.judged_images(out)
        pix_grads = torch.autograd.grad(total, judged, retain_graph=True, allow_unused=True)
        leaves = [img.detach().float().requires_grad_(True) for img in judged]
        # the discriminator's parameters get no gradient here: call the plain module (a DDP
        # wrapper would wait for a gradient reduction that never comes)
        disc = getattr(discriminator, "module", discriminator)
        injected = total.new_zeros(())
        for name in self.semantic_terms:
            if name not in w:
                continue
            value = (
                self._tic(leaves, batch, text, image_encoder)
                if name == "tic"
                else self._cgan(leaves, text, disc)
            )
            grads = torch.autograd.grad(w[name] * value, leaves)
            gains = []
            for img, g, gp in zip(judged, grads, pix_grads, strict=True):
                gp_norm = (
                    torch.zeros_like(g[:, 0, 0, 0])
                    if gp is None
                    else gp.float().flatten(1).norm(dim=1)
                )
                g_norm = g.flatten(1).norm(dim=1)
                gain = (self.cfg.balance_ratio * gp_norm / g_norm.clamp(min=1e-20)).clamp(max=1)
                gains.append(gain.mean())
                injected = injected + (img.float() * (gain.view(-1, 1, 1, 1) * g)).sum()
            logs[name] = _num(value)
            logs[f"{name}_gain"] = _num(torch.stack(gains).mean())
            logs["g_total"] += w[name] * logs[name]  # the objective's value, as with "sum"
        return total + injected, logs

    # ------------------------------------------------------------------ discriminator side
    def discriminator_loss(
        self,
        out: GeneratorOutput,
        batch: dict,
        text: TextFeatures | None,
        discriminator: nn.Module,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Unweighted D loss (its own optimizer; λ_cGAN only scales the G side)."""
        if not self.uses_discriminator:
            raise ValueError("loss.cgan is 0: there is no discriminator to train")
        sentence = text.sentence.detach() if text is not None else None
        real = batch["gt"]
        real_u, real_c = discriminator(real, sentence)
        fakes = [img.detach() for img in self.judged_images(out)]
        fake_u = fake_c = 0.0
        for img in fakes:
            u, c = discriminator(img, sentence)
            fake_u = fake_u + bce_logits(u, 0.0) / len(fakes)
            if c is not None:
                fake_c = fake_c + bce_logits(c, 0.0) / len(fakes)
        logs: dict[str, float] = {"d_real_u": _num(bce_logits(real_u.detach(), 1.0))}
        if real_c is None:
            total = bce_logits(real_u, 1.0) + fake_u
        else:
            wrong = torch.zeros((), device=real.device)
            if real.shape[0] > 1:
                _, wrong_c = discriminator(real[:-1], sentence[1:])
                wrong = bce_logits(wrong_c, 0.0)
            total = (
                0.5 * (bce_logits(real_u, 1.0) + bce_logits(real_c, 1.0))
                + (fake_u + fake_c + wrong) / 3
            )
            logs["d_real_c"] = _num(bce_logits(real_c.detach(), 1.0))
            logs["d_fake_c"] = _num(fake_c)
            logs["d_wrong_c"] = _num(wrong)
        logs["d_fake_u"] = _num(fake_u)
        logs["d_total"] = _num(total)
        return total, logs
