"""How large are the TIC and cGAN gradients next to the pixel losses' (the cause in
docs/ablations.md)?

    python benchmarks/semantic_gradients.py DAMSM_DIR [BATCHES] [k=v overrides ...]

Builds the quickstart preset (plus the overrides; λ_TIC 0.5 and λ_cGAN 0.1 unless overridden)
with the DAMSM in DAMSM_DIR, at initialisation (seed 0), and for BATCHES (default 4) training
batches prints one JSON object: for every term (weighted as in the objective) the norm of its
gradient at each judged image (mean over samples) and over the generator's parameters, the
cosine between each semantic term's parameter gradient and the pixel terms', and the factor by
which clipping at ``train.grad_clip`` scales the summed gradient. fp32 on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys

import torch
from torch.utils.data import DataLoader

from tgsr.config import load_config
from tgsr.data.degradations import build_pyramids
from tgsr.data.loader import build_dataset
from tgsr.losses import LossSuite
from tgsr.models.discriminator import Discriminator
from tgsr.training.trainer import build_generator, conditioning_encoder, load_frozen_damsm


def main() -> None:
    damsm_dir = sys.argv[1]
    batches = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    overrides = ["loss.tic=0.5", "loss.cgan=0.1", "loss.balance=sum", *sys.argv[3:]]
    torch.manual_seed(0)
    cfg = load_config("quickstart", overrides)
    frozen, image_encoder, vocab = load_frozen_damsm(damsm_dir, True)
    cond = conditioning_encoder(cfg.train.text_encoder, frozen, len(vocab), cfg)
    gen = build_generator(cfg, frozen.feature_dim)
    disc = Discriminator(cfg.discriminator, cfg.data.hr_size, cfg.data.scale, frozen.feature_dim)
    data = build_dataset(cfg.data, vocab, train=True)
    loader = iter(DataLoader(data, batch_size=cfg.train.batch_size, num_workers=0))
    params = list(gen.parameters()) + list(cond.parameters())
    terms = {t: float(getattr(cfg.loss, t)) for t in ("l2", "fine_l2", "tar", "tic", "cgan")}
    terms = {t: w for t, w in terms.items() if w > 0}
    rows = []
    for _ in range(batches):
        batch = next(loader)
        with torch.no_grad():
            text = frozen.encode(batch["tokens"], batch["length"])
            gts, lows = build_pyramids(batch["gt"], cfg.data.scale, cfg.data.lowpass_sigma,
                                       cfg.data.degradation)  # fmt: skip
        c = cond.encode(batch["tokens"], batch["length"]) if cond is not frozen else text
        out = gen(batch["lq"], c.words, c.sentence, c.token_mask)
        suite = LossSuite(cfg.loss, cfg.generator, cfg.damsm)
        judged = suite.judged_images(out)
        row, grads = {}, {}
        for term, weight in terms.items():
            only = {t: (weight if t == term else 0.0) for t in terms}
            one = LossSuite(dataclasses.replace(cfg.loss, **only), cfg.generator, cfg.damsm)
            loss, logs = one.generator_loss(out, batch, gts, lows, text, image_encoder, disc)
            g = torch.autograd.grad(loss, judged + params, retain_graph=True, allow_unused=True)
            at_img = [x.flatten(1).norm(dim=1).mean().item() if x is not None else 0.0
                      for x in g[: len(judged)]]  # fmt: skip
            flat = torch.cat([(x if x is not None else torch.zeros_like(p)).flatten()
                              for x, p in zip(g[len(judged):], params, strict=True)])  # fmt: skip
            grads[term] = flat
            row[term] = {"value": logs[term], "weighted": weight * logs[term],
                         "grad_at_images": at_img, "grad_params": flat.norm().item()}  # fmt: skip
        pixel = sum(grads[t] for t in grads if t not in ("tic", "cgan"))
        total = sum(grads.values())
        for t in ("tic", "cgan"):
            if t in grads:
                cos = torch.nn.functional.cosine_similarity(grads[t], pixel, dim=0).item()
                row[t]["cos_with_pixel_params"] = cos
                row[t]["params_ratio_to_pixel"] = grads[t].norm().item() / pixel.norm().item()
        row["pixel_grad_params"] = pixel.norm().item()
        row["total_grad_params"] = total.norm().item()
        row["clip_scale"] = min(1.0, cfg.train.grad_clip / total.norm().item())
        rows.append(row)
    print(json.dumps({"overrides": overrides, "damsm": damsm_dir, "batches": rows,
                      "torch": torch.__version__, "python": platform.python_version(),
                      "device": "cpu"}))  # fmt: skip


if __name__ == "__main__":
    main()
