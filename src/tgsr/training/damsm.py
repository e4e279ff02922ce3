"""DAMSM pre-training (AttnGAN's ``pretrain_DAMSM``, docs/paper_vs_code.md R2): the bi-LSTM
text encoder and the image encoder's projections learn the word (γ1, γ2, γ3) and sentence losses.

Differences from the released script, on purpose: Adam is created once (AttnGAN re-creates it
every epoch, resetting its moments), training is measured in steps and may stop on a
wall-clock budget, and checkpoints are atomic and resumable.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from tgsr.config import Config, save_config
from tgsr.errors import TGSRError
from tgsr.training.checkpoint import (
    RunCheckpoints,
    Stopwatch,
    checkpoint_candidates,
    latest_checkpoint,
    load_checkpoint,
    restore_process_state,
)
from tgsr.training.common import (
    ScalarLog,
    StepTimer,
    StopSignal,
    agreed,
    bar_total,
    console,
    format_losses,
    infinite,
    make_progress,
    preflight,
    start_run,
    train_loader,
)


def build_damsm_modules(cfg: Config, vocab_size: int):
    from tgsr.models.image_encoder import build_image_encoder
    from tgsr.models.text_encoder import TextEncoder

    text_encoder = TextEncoder(vocab_size, **asdict(cfg.damsm.text_encoder))
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
    """Train a DAMSM pair on ``cfg.data`` and save it to ``out_dir`` (a DAMSM folder)."""
    from tgsr.data.loader import build_vocabulary
    from tgsr.models.damsm import damsm_loss
    from tgsr.models.serialization import save_damsm

    tc = cfg.damsm_train
    preflight(out_dir, False, cfg.data)
    out_dir, accelerator = start_run(
        out_dir, tc.mixed_precision, tc.seed, cfg.train.torch_threads, cpu
    )
    main = accelerator.is_main_process

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
    device = accelerator.device
    ckpt_root = out_dir / "checkpoints"
    ckpt_dir = ckpt_root / "last"
    modules = {
        "text_encoder": accelerator.unwrap_model(text_encoder),
        "image_encoder": accelerator.unwrap_model(image_encoder),
    }
    stateful = {"optimizer": optimizer}
    if accelerator.scaler is not None:
        stateful["grad_scaler"] = accelerator.scaler
    step, elapsed, state = 0, 0.0, None
    if resume and checkpoint_candidates(ckpt_root):  # nothing saved yet: a fresh start
        found = latest_checkpoint(ckpt_root, warn=console.print if main else None)
        if found is None:
            raise TGSRError(f"--resume: no usable checkpoint in {ckpt_root}")
        state = load_checkpoint(found[0], modules, stateful, restore_rng=False)
        step, elapsed = state["step"], state["elapsed"]
        if main:
            console.print(f"resumed DAMSM training from {found[0]} at step {step}")
    if main:
        save_config(cfg, out_dir / "config.yaml")
    log = ScalarLog(out_dir / "tb", enabled=main)
    if state is not None:
        log.history = {k: [tuple(p) for p in v] for k, v in state.get("history", {}).items()}
    watch = Stopwatch(elapsed)
    budget = tc.max_minutes * 60 if tc.max_minutes else math.inf
    timer = StepTimer()

    checkpoints = RunCheckpoints(
        ckpt_dir,
        modules,
        stateful,
        loader,
        keep=tc.keep_checkpoints,
        main=main,
        saved_step=step if state is not None else -1,
    )

    text_encoder.train()
    image_encoder.train()
    batches = infinite(loader, start=step)
    if state is not None:  # last, so nothing between here and the loop draws from the RNGs
        restore_process_state(state, accelerator.process_index, loader.dataset)
    values: dict[str, float] = {}
    with StopSignal() as stop, make_progress(disable=not (progress and main)) as bar:
        task = bar.add_task("DAMSM", total=tc.max_steps, completed=step, info="")
        while step < tc.max_steps and agreed(watch.elapsed < budget and not stop.requested,
                                             device):  # fmt: skip
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
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
            step += 1
            dt = timer.tick()
            if step % tc.log_every == 0 or step == 1:
                values = {k: v.item() for k, v in parts.items()} | {"loss": loss.item()}
                log.add(step, values, "damsm/")
            bar.update(
                task,
                completed=step,
                total=bar_total(step, tc.max_steps, watch.elapsed, budget, dt),
                info=f"{dt * 1000:.0f} ms/step {format_losses(values, ['loss'])}",
            )
            if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                checkpoints.save(step, watch.elapsed, log.history)
    checkpoints.save(step, watch.elapsed, log.history)
    log.close()
    if main:
        te = accelerator.unwrap_model(text_encoder).eval()
        ie = accelerator.unwrap_model(image_encoder).eval()
        save_damsm(te, ie, out_dir, vocab, cfg.damsm)
        console.print(
            f"DAMSM saved to {out_dir} after {step} steps "
            f"({watch.elapsed / 60:.1f} min); {vocab.oov_report()}"
        )
    accelerator.wait_for_everyone()
    return out_dir


def copy_damsm(src: str | Path, dst: str | Path) -> None:
    """Copy a DAMSM folder's weights (not its checkpoints/logs) into a run folder."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in ("checkpoints", "tb"):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dst / item.name)
