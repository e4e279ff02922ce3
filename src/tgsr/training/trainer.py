"""TGSR training: one readable loop (paper §3.4, Eq. 3-4) on HF Accelerate.

batch -> text features -> HR / low-pass pyramids -> D step -> G step -> EMA -> log -> images /
checkpoint. The generator's text features come from the frozen DAMSM text encoder (paper) or,
with ``train.text_encoder`` = finetune / scratch, from a text encoder trained with the generator
(saved as ``RUN/text_encoder``); the TIC and cGAN losses always use the frozen DAMSM. The same
code runs on CPU, one GPU, several GPUs and several nodes (``accelerate launch`` or
``torchrun``); mixed precision comes from ``train.mixed_precision``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tgsr.config import Config, save_config
from tgsr.errors import TGSRError
from tgsr.training.checkpoint import (
    RunCheckpoints,
    Stopwatch,
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


def needs_damsm(cfg: Config) -> bool:
    return cfg.generator.use_text or cfg.loss.tic > 0 or cfg.loss.cgan > 0


def build_generator(cfg: Config, word_dim: int):
    from tgsr.models.generator import Generator

    return Generator(scale=cfg.data.scale, word_dim=word_dim, **asdict(cfg.generator))


def conditioning_encoder(mode: str, frozen: torch.nn.Module, vocab_size: int, cfg: Config):
    """The text encoder whose features condition the generator: ``frozen`` itself, a trainable
    copy of it (``finetune``) or a new one (``scratch``); a trainable one has no dropout."""
    import copy

    from tgsr.models.text_encoder import TextEncoder

    if mode == "frozen":
        return frozen
    if mode == "finetune":
        encoder = copy.deepcopy(frozen)
    else:
        tcfg = cfg.damsm.text_encoder
        embedding_dim = cfg.train.scratch_embedding_dim or tcfg.embedding_dim
        encoder = TextEncoder(vocab_size, embedding_dim, tcfg.hidden_dim, dropout=0.0)
    encoder.dropout.p = 0.0
    encoder.requires_grad_(True)
    return encoder.train()


def load_frozen_damsm(path: str | Path, need_image_encoder: bool):
    """(text_encoder, image_encoder | None, vocab), frozen and in eval mode."""
    from tgsr.models.serialization import load_damsm

    damsm, vocab = load_damsm(path)
    text_encoder, image_encoder = damsm.text_encoder, damsm.image_encoder
    modules = [text_encoder] + ([image_encoder] if need_image_encoder else [])
    for m in modules:
        m.eval()
        m.requires_grad_(False)
    return text_encoder, (image_encoder if need_image_encoder else None), vocab


def _grid_row(batch, out, n: int = 4) -> np.ndarray:
    """LR (nearest) | coarse | fine | GT for the first ``n`` samples, one uint8 image."""
    import torch.nn.functional as F

    gt = batch["gt"][:n].float()
    lq = F.interpolate(batch["lq"][:n].float(), size=gt.shape[-2:], mode="nearest")
    cols = [lq, out.coarse[-1][:n].float(), out.sr[:n].float(), gt]
    grid = torch.cat([torch.cat(list(c), dim=1) for c in cols], dim=2)  # (3, n*H, 4*W)
    return grid.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def _encode(encoder, batch):
    """Text features through ``encoder``'s forward (under DDP its gradients are all-reduced)."""
    from tgsr.models.text_encoder import TextFeatures, token_mask_from_lengths

    words, sentence = encoder(batch["tokens"], batch["length"])
    mask = token_mask_from_lengths(batch["length"], batch["tokens"].shape[1])
    return TextFeatures(words, sentence, mask)


def _call_eval(on_eval, step: int, ema, generator, text_ema, text_encoder, train_text) -> None:
    from accelerate.utils import extract_model_from_parallel

    g = ema.module if ema is not None else extract_model_from_parallel(generator)
    t = None
    if train_text:
        t = text_ema.module if text_ema is not None else extract_model_from_parallel(text_encoder)
    modes = [(m, m.training) for m in (g, t) if m is not None]
    for m, _ in modes:
        m.eval()
    with torch.no_grad():
        on_eval(step, g, t)
    for m, was in modes:
        m.train(was)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    generator: torch.nn.Module  # the final (EMA) generator, on every process
    text_encoder: torch.nn.Module | None = None  # the trained conditioning encoder, if any


def _attention_row(attn: torch.Tensor, max_words: int = 8) -> np.ndarray:
    """(T, h, w) word maps -> one uint8 strip, each map min-max normalised (padding is zero)."""
    maps = attn[:max_words].float()
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    maps = (maps - lo) / (hi - lo).clamp(min=1e-8)
    strip = torch.cat(list(maps), dim=1)  # (h, T*w)
    return strip.mul(255).byte().unsqueeze(-1).expand(-1, -1, 3).cpu().numpy()


def fit(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    cpu: bool | None = None,
    on_eval: Callable[[int, torch.nn.Module, torch.nn.Module | None], None] | None = None,
) -> TrainResult:
    """Train TGSR as ``cfg`` says; write the run folder (docs/architecture.md).

    ``on_eval(step, generator, text_encoder)``, if given, is called on the main process every
    ``train.eval_every`` steps (and after the last) with the EMA generator and the EMA
    conditioning text encoder (None with the frozen DAMSM's features), both in eval mode and
    switched back to train mode afterwards (used by the benchmarks for learning curves)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from tgsr.data.degradations import build_pyramids
    from tgsr.data.loader import build_vocabulary
    from tgsr.losses import LossSuite
    from tgsr.models.discriminator import Discriminator
    from tgsr.models.serialization import save_generator, save_text_encoder
    from tgsr.training.damsm import copy_damsm

    tc = cfg.train
    preflight(run_dir, resume, cfg.data, needs_damsm(cfg), cfg.damsm.path)
    run_dir, accelerator = start_run(run_dir, tc.mixed_precision, tc.seed, tc.torch_threads, cpu)
    main = accelerator.is_main_process
    device = accelerator.device

    # ---- text side: a pre-trained DAMSM, frozen (paper §3.4) -------------------------------
    text_encoder = image_encoder = None
    if needs_damsm(cfg):  # preflight() made sure damsm.path is set
        text_encoder, image_encoder, vocab = load_frozen_damsm(cfg.damsm.path, cfg.loss.tic > 0)
        text_encoder.to(device)
        if image_encoder is not None:
            image_encoder.to(device)
        word_dim = text_encoder.feature_dim
    else:
        vocab = build_vocabulary(cfg.data)
        word_dim = 2 * cfg.damsm.text_encoder.hidden_dim

    # ---- data ----------------------------------------------------------------------------
    loader = train_loader(cfg.data, vocab, tc.batch_size, "train.batch_size", seed=tc.seed)

    # ---- networks, losses, optimizers ----------------------------------------------------
    generator = build_generator(cfg, word_dim)
    # the encoder whose features condition the generator (the frozen DAMSM's, or a trained one)
    cond_encoder = None
    if text_encoder is not None and cfg.generator.use_text:
        cond_encoder = conditioning_encoder(tc.text_encoder, text_encoder, len(vocab), cfg)
    train_text = cond_encoder is not None and tc.text_encoder != "frozen"
    # the frozen DAMSM's features are needed to condition (frozen) or for TIC / cGAN
    frozen_features = not train_text or cfg.loss.tic > 0 or cfg.loss.cgan > 0
    discriminator = None
    if cfg.loss.cgan > 0:
        discriminator = Discriminator(
            hr_size=cfg.data.hr_size, scale=cfg.data.scale, sentence_dim=word_dim,
            **asdict(cfg.discriminator),
        )  # fmt: skip
    suite = LossSuite(cfg.loss, cfg.generator, cfg.damsm, degradation=cfg.data.degradation)
    memory_format = torch.channels_last if tc.channels_last else torch.contiguous_format
    generator.to(memory_format=memory_format)
    g_params = list(generator.parameters())
    if train_text:
        cond_encoder.to(device)
        g_params += list(cond_encoder.parameters())
    # foreach=True: one multi-tensor kernel per Adam op instead of a Python loop over the
    # parameters (the default on GPUs, not on CPUs); bit-identical results
    opt_g = torch.optim.Adam(
        g_params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps,
        weight_decay=tc.weight_decay, foreach=True,
    )  # fmt: skip
    warmup = max(tc.warmup_steps, 1)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: min(1.0, (s + 1) / warmup))
    modules = {"generator": generator}
    optimizers = {"generator": opt_g}
    if discriminator is not None:
        discriminator.to(memory_format=memory_format)
        opt_d = torch.optim.Adam(
            discriminator.parameters(), lr=tc.d_lr, betas=tuple(tc.betas), foreach=True
        )
        discriminator, opt_d = accelerator.prepare(discriminator, opt_d)
        modules["discriminator"] = discriminator
        optimizers["discriminator"] = opt_d
    generator, opt_g = accelerator.prepare(generator, opt_g)  # the loader shards itself
    if train_text:
        cond_encoder = accelerator.prepare(cond_encoder)
        modules["text_encoder"] = cond_encoder
    ema = text_ema = None
    if tc.ema_decay > 0:
        ema = AveragedModel(
            accelerator.unwrap_model(generator),
            multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay),
            use_buffers=True,
        )
        modules["ema"] = ema
        if train_text:
            text_ema = AveragedModel(
                accelerator.unwrap_model(cond_encoder),
                multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay),
            )
            modules["text_ema"] = text_ema

    # ---- resume (docs/reliability.md: exact, from the newest checkpoint that verifies) -----
    optimizers["scheduler_g"] = sched_g
    if accelerator.scaler is not None:
        optimizers["grad_scaler"] = accelerator.scaler
    ckpt_root = run_dir / "checkpoints"
    ckpt_dir = ckpt_root / "last"
    step, elapsed, state = 0, 0.0, None
    plain = {k: accelerator.unwrap_model(m) for k, m in modules.items()}
    if resume:
        found = latest_checkpoint(ckpt_root, warn=console.print if main else None)
        if found is None:
            raise TGSRError(f"--resume: no usable checkpoint in {ckpt_root}")
        state = load_checkpoint(found[0], plain, optimizers, restore_rng=False)
        step, elapsed = state["step"], state["elapsed"]
        if main:
            console.print(
                f"resumed from {found[0]} at step {step} ({elapsed / 60:.1f} min already trained)"
            )
            if state.get("batches_per_epoch", len(loader)) != len(loader):
                console.print("[yellow]the data set changed size: resume is not exact[/]")
    if main:
        save_config(cfg, run_dir / "config.yaml")
        vocab.save(run_dir / "vocab.json")
        if cfg.damsm.path:
            copy_damsm(cfg.damsm.path, run_dir / "damsm")
        (run_dir / "samples").mkdir(exist_ok=True)
    log = ScalarLog(run_dir / "tb", enabled=main)
    if state is not None:  # the loss curve so far, so train_summary.json holds all of it
        log.history = {k: [tuple(p) for p in v] for k, v in state.get("history", {}).items()}
    watch = Stopwatch(elapsed)
    budget = tc.max_minutes * 60 if tc.max_minutes else math.inf
    timer = StepTimer()

    checkpoints = RunCheckpoints(
        ckpt_dir,
        plain,
        optimizers,
        loader,
        keep=tc.keep_checkpoints,
        main=main,
        saved_step=step if resume else -1,
    )

    def to_device(batch):
        out = {}
        for k, v in batch.items():
            if torch.is_tensor(v):
                v = v.to(device, non_blocking=True)
                if v.dim() == 4:
                    v = v.contiguous(memory_format=memory_format)
            out[k] = v
        return out

    generator.train()
    if discriminator is not None:
        discriminator.train()
    batches = infinite(loader, start=step)
    if state is not None:  # last, so nothing between here and the loop draws from the RNGs
        if not restore_process_state(state, accelerator.process_index, loader.dataset) and main:
            console.print("[yellow]more processes than the checkpoint had: resume is not exact[/]")
    values: dict[str, float] = {}
    show = ["g_total", "l2", "tar", "tic", "cgan", "d_total"]
    with StopSignal() as stop, make_progress(disable=not (progress and main)) as bar:
        task = bar.add_task(cfg.name, total=tc.max_steps, completed=step, info="")
        while step < tc.max_steps and agreed(watch.elapsed < budget and not stop.requested,
                                             device):  # fmt: skip
            batch = to_device(next(batches))
            text = cond = None
            if text_encoder is not None and frozen_features:
                with torch.no_grad():
                    text = text_encoder.encode(batch["tokens"], batch["length"])
            cond = _encode(cond_encoder, batch) if train_text else text
            if text is None:  # TAR needs only the word mask, which both encoders share
                text = cond
            with torch.no_grad():
                gt_levels, lowpass_levels = build_pyramids(
                    batch["gt"], cfg.data.scale, cfg.data.lowpass_sigma, cfg.data.degradation
                )
            words = cond.words if (cond is not None and cfg.generator.use_text) else None
            mask = cond.token_mask if cond is not None else None
            sentence = cond.sentence if (cond is not None and cfg.generator.use_text) else None

            # -- discriminator step ---------------------------------------------------------
            with accelerator.autocast():
                out = generator(batch["lq"], words, sentence, mask)
            d_values = {}
            if discriminator is not None and suite.trains_discriminator(step + 1):
                with accelerator.autocast():
                    d_loss, d_values = suite.discriminator_loss(out, batch, text, discriminator)
                opt_d.zero_grad(set_to_none=True)
                accelerator.backward(d_loss)
                if tc.grad_clip > 0:
                    accelerator.clip_grad_norm_(discriminator.parameters(), tc.grad_clip)
                opt_d.step()

            # -- generator step -------------------------------------------------------------
            with accelerator.autocast():
                g_loss, g_values = suite.generator_loss(
                    out, batch, gt_levels, lowpass_levels, text,
                    damsm_image_encoder=image_encoder, discriminator=discriminator,
                    step=step + 1,
                )  # fmt: skip
            opt_g.zero_grad(set_to_none=True)
            accelerator.backward(g_loss)
            grad_norm = None  # the generator's gradient norm before clipping (logged)
            if tc.grad_clip > 0:
                grad_norm = accelerator.clip_grad_norm_(g_params, tc.grad_clip)
            opt_g.step()
            sched_g.step()
            step += 1
            if accelerator.num_processes > 1:  # BatchNorm statistics: rank 0's everywhere,
                for buf in accelerator.unwrap_model(generator).buffers():  # so EMA copies agree
                    torch.distributed.broadcast(buf, src=0)
            for avg, live in ((ema, generator), (text_ema, cond_encoder)):
                if avg is None:
                    continue
                if step <= tc.ema_start:
                    avg.module.load_state_dict(accelerator.unwrap_model(live).state_dict())
                else:
                    avg.update_parameters(accelerator.unwrap_model(live))

            # -- log / images / checkpoint --------------------------------------------------
            dt = timer.tick()
            if step % tc.log_every == 0 or step == 1:
                values = {**g_values, **d_values}
                values = {k: float(v) for k, v in values.items()}
                log.add(step, values, "train/")
                perf = {"ms_per_step": dt * 1000, "lr": sched_g.get_last_lr()[0]}
                if grad_norm is not None:
                    perf["g_grad_norm"] = float(grad_norm)
                log.add(step, perf, "perf/")
            bar.update(task, completed=step,
                       total=bar_total(step, tc.max_steps, watch.elapsed, budget, dt),
                       info=f"{dt * 1000:.0f} ms/step {format_losses(values, show)}")  # fmt: skip
            if main and tc.image_every and step % tc.image_every == 0:
                row = _grid_row(batch, out)
                log.image("samples/lq_coarse_fine_gt", row, step)
                if out.attn:  # per-word maps of the last TAM for the first sample
                    log.image("samples/word_attention", _attention_row(out.attn[-1][0]), step)
                from PIL import Image

                Image.fromarray(row).save(run_dir / "samples" / f"step_{step:07d}.png")
            if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                checkpoints.save(step, watch.elapsed, log.history)
            if on_eval is not None and main and tc.eval_every and step % tc.eval_every == 0:
                _call_eval(on_eval, step, ema, generator, text_ema, cond_encoder, train_text)
    if on_eval is not None and main and not (tc.eval_every and step % tc.eval_every == 0):
        _call_eval(on_eval, step, ema, generator, text_ema, cond_encoder, train_text)
    checkpoints.save(step, watch.elapsed, log.history)
    accelerator.wait_for_everyone()
    final = ema.module if ema is not None else accelerator.unwrap_model(generator)
    final_text = None
    if train_text:
        final_text = text_ema.module if text_ema is not None else cond_encoder
        final_text = accelerator.unwrap_model(final_text).eval()
    if main:
        save_generator(final, run_dir / "generator")
        if train_text:
            save_text_encoder(final_text, run_dir / "text_encoder", vocab)
        (run_dir / "train_summary.json").write_text(json.dumps({
            "steps": step,
            "minutes": watch.elapsed / 60,
            "stopped_by": "signal" if stop.requested else (
                "max_steps" if step >= tc.max_steps else "max_minutes"),
            "images_seen": step * tc.batch_size * accelerator.num_processes,
            "history": log.history,
        }))  # fmt: skip
        console.print(f"{cfg.name}: {step} steps in {watch.elapsed / 60:.1f} min -> {run_dir}")
    log.close()
    return TrainResult(run_dir, step, final.eval(), final_text)
