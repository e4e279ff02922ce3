"""Tiny real training-run / pipeline folders for the inference tests (random seeded weights).

``make_run_dir(root)`` writes the run folder layout of ``docs/architecture.md`` from tiny real
components through the real serialization (config.yaml, vocab.json, damsm/, generator/,
checkpoints/last/ with a discriminator and optimizer state); ``make_pipeline_dir`` exports it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from tgsr.config import load_config, save_config
from tgsr.text import Vocabulary

CAPTIONS = [
    "a red and cyan striped circle",
    "a blue and yellow checked square on the left",
    "a small green triangle with dots on the right",
    "a big purple and orange star",
]
WORD_DIM = 16


def tiny_config(scale: int = 8, use_text: bool = True, arch: str = "paper", **generator):
    overrides = [
        "name=tiny",
        f"data.scale={scale}",
        "data.hr_size=64",
        "data.max_words=8",
        "damsm.text_encoder.embedding_dim=8",
        f"damsm.text_encoder.hidden_dim={WORD_DIM // 2}",
        "damsm.text_encoder.dropout=0.0",
        "damsm.image_encoder.kind=light",
        f"damsm.image_encoder.feature_dim={WORD_DIM}",
        "damsm.image_encoder.light_channels=8",
        "generator.channels=8",
        f"generator.arch={arch}",
        f"generator.use_text={str(use_text).lower()}",
        "discriminator.channels=8",
    ]
    if not use_text:
        overrides += [
            "loss.tar=0",
            "loss.tic=0",
            "loss.fine_l2=1",
            "discriminator.conditional=false",
        ]
    overrides += [
        f"generator.{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in generator.items()
    ]
    return load_config(None, overrides)


def tiny_components(cfg, seed: int = 0):
    """-> (generator, text_encoder, image_encoder, discriminator, vocab), seeded, eval mode."""
    from tgsr.models import TextEncoder, build_generator, build_image_encoder
    from tgsr.models.discriminator import Discriminator

    torch.manual_seed(seed)
    vocab = Vocabulary.build(CAPTIONS)
    te = cfg.damsm.text_encoder
    text_encoder = TextEncoder(te, len(vocab)).eval()
    image_encoder = build_image_encoder(cfg.damsm.image_encoder, load_weights=False).eval()
    generator = build_generator(cfg, 2 * te.hidden_dim).eval()
    discriminator = Discriminator(
        cfg.discriminator, cfg.data.hr_size, cfg.data.scale, 2 * te.hidden_dim
    )
    # random (non-zero) image heads so that the text visibly changes the output
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if "to_image" in name and p.dim() == 4:
                p.normal_(0, 0.05)
    return generator, text_encoder, image_encoder, discriminator, vocab


def make_run_dir(
    root: Path,
    scale: int = 8,
    use_text: bool = True,
    arch: str = "paper",
    seed: int = 0,
    with_generator: bool = True,
    **generator_kw,
) -> Path:
    from tgsr.models.serialization import save_damsm, save_generator
    from tgsr.training.checkpoint import save_checkpoint

    run = Path(root)
    run.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(scale, use_text, arch, **generator_kw)
    generator, text_encoder, image_encoder, discriminator, vocab = tiny_components(cfg, seed)
    save_config(cfg, run / "config.yaml")
    vocab.save(run / "vocab.json")
    save_damsm(text_encoder, image_encoder, run / "damsm", vocab, cfg.damsm)
    if with_generator:
        save_generator(generator, run / "generator")
    opt = torch.optim.Adam(generator.parameters(), lr=1e-4)
    save_checkpoint(
        run / "checkpoints" / "last",
        {"generator": copy.deepcopy(generator), "ema": generator, "discriminator": discriminator},
        {"generator": opt},
        {"step": 1},
    )
    return run


def make_pipeline_dir(root: Path, **kw) -> Path:
    """Export a tiny run into ``root/model`` and return that folder."""
    from tgsr.export import export_pipeline

    run = make_run_dir(Path(root) / "run", **kw)
    return export_pipeline(run, Path(root) / "model")


def natural_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth photograph-like uint8 (H, W, 3) image: gradients, soft blobs, texture, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = y / max(h - 1, 1), x / max(w - 1, 1)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, d = rng.uniform(-0.4, 0.4, 3)
        img[..., c] = 0.5 + a * x + b * y + d * x * y
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.35)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-0.3, 0.3, 3)
    freq = rng.uniform(5, 15)
    img += 0.05 * np.sin(2 * np.pi * freq * (x + 0.3 * y))[..., None]
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(np.floor(img * 255 + 0.5), 0, 255).astype(np.uint8)
