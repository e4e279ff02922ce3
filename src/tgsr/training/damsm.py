"""DAMSM pre-training (AttnGAN's ``pretrain_DAMSM``, docs/paper_vs_code.md R2): the bi-LSTM
text encoder and the image encoder's projections learn the word (γ1, γ2, γ3) and sentence losses.

Differences from the released script, on purpose: Adam is created once (AttnGAN re-creates it
every epoch, resetting its moments), training is measured in steps and may stop on a
wall-clock budget, and checkpoints are atomic and resumable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tgsr.config import Config, save_config
from tgsr.data.loader import build_vocabulary
from tgsr.models.damsm import damsm_loss
from tgsr.models.image_encoder import build_image_encoder
from tgsr.models.serialization import save_damsm
from tgsr.models.text_encoder import TextEncoder
from tgsr.training.checkpoint import checkpoint_candidates
from tgsr.training.common import console, train_loader
from tgsr.training.run import Run


def build_damsm_modules(cfg: Config, vocab_size: int):
    text_encoder = TextEncoder(cfg.damsm.text_encoder, vocab_size)
    image_encoder = build_image_encoder(cfg.damsm.image_encoder)
    return text_encoder, image_encoder


def train_damsm(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    cpu: bool | None = None,
) -> Path:
    """Train a DAMSM pair on ``cfg.data`` and save it to ``out_dir`` (a DAMSM folder).

    ``resume`` with no checkpoint saved yet starts afresh (the quickstart's DAMSM may be
    interrupted before its first checkpoint)."""
    tc = cfg.damsm_train
    resume = resume and bool(checkpoint_candidates(Path(out_dir) / "checkpoints"))
    run = Run(out_dir, tc, cfg.data, title="DAMSM", resume=resume, progress=progress, cpu=cpu,
              threads=cfg.train.torch_threads, show=("loss",))  # fmt: skip
    accelerator = run.accelerator
    vocab = build_vocabulary(cfg.data)
    loader = train_loader(cfg.data, vocab, tc.batch_size, "damsm_train.batch_size", seed=tc.seed)
    text_encoder, image_encoder = build_damsm_modules(cfg, len(vocab))
    params = list(text_encoder.parameters()) + [
        p for p in image_encoder.parameters() if p.requires_grad
    ]
    optimizer = torch.optim.Adam(params, lr=tc.lr, betas=tuple(tc.betas))
    text_encoder, image_encoder, optimizer = accelerator.prepare(
        text_encoder, image_encoder, optimizer
    )  # the loader shards itself (training/checkpoint.py ShuffledBatches)
    modules = {"text_encoder": text_encoder, "image_encoder": image_encoder}
    run.restore(modules, {"optimizer": optimizer}, loader)
    if run.main:
        save_config(cfg, run.dir / "config.yaml")
    text_encoder.train()
    image_encoder.train()
    values: dict[str, float] = {}
    with run.loop(loader) as batches:
        for batch in batches:
            batch = {k: v.to(run.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with accelerator.autocast():
                words, sentence = text_encoder(batch["tokens"], batch["length"])
                regions, global_feat = image_encoder(batch["gt"])
                token_mask = batch["tokens"] == 0
                loss, parts = damsm_loss(
                    regions, global_feat, words, sentence, token_mask, batch.get("class_id"),
                    cfg.damsm.gamma1, cfg.damsm.gamma2, cfg.damsm.gamma3,
                )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if tc.rnn_grad_clip > 0:
                accelerator.clip_grad_norm_(text_encoder.parameters(), tc.rnn_grad_clip)
            optimizer.step()
            dt = run.advance()
            if run.step % tc.log_every == 0 or run.step == 1:
                values = {k: v.item() for k, v in parts.items()} | {"loss": loss.item()}
                run.log.add(run.step, values, "damsm/")
            run.end_step(dt, values)
    run.checkpoint()
    if run.main:
        te = accelerator.unwrap_model(text_encoder).eval()
        ie = accelerator.unwrap_model(image_encoder).eval()
        save_damsm(te, ie, run.dir, vocab, cfg.damsm)
        run.write_summary()
        console.print(
            f"DAMSM saved to {run.dir} after {run.step} steps "
            f"({run.watch.elapsed / 60:.1f} min); {vocab.oov_report()}"
        )
    run.close()
    accelerator.wait_for_everyone()
    return run.dir


def copy_damsm(src: str | Path, dst: str | Path) -> None:
    """Copy a DAMSM folder's weights (not its checkpoints/logs) into a run folder."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in ("checkpoints", "tb", "train_summary.json"):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dst / item.name)
