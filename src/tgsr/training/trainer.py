"""TGSR training: one readable loop (paper §3.4, Eq. 3-4) on HF Accelerate.

batch -> text features -> HR / low-pass pyramids -> D step -> G step -> EMA -> log -> images /
checkpoint. The generator's text features come from the frozen DAMSM text encoder (paper) or,
with ``train.text_encoder`` = finetune / scratch, from a text encoder trained with the generator
(saved as ``RUN/text_encoder``); the TIC and cGAN losses always use the frozen DAMSM. The same
code runs on CPU, one GPU, several GPUs and several nodes (``accelerate launch`` or
``torchrun``); mixed precision comes from ``train.mixed_precision``. The run folder, resume,
checkpoints, time budget and stop signal are :class:`~tgsr.training.run.Run`'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from PIL import Image
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tgsr.config import Config
from tgsr.data.degradations import build_pyramids
from tgsr.data.loader import build_vocabulary
from tgsr.losses import LossSuite
from tgsr.models.discriminator import Discriminator
from tgsr.models.factory import build_generator
from tgsr.models.serialization import load_damsm, save_generator, save_text_encoder
from tgsr.models.text_encoder import TextEncoder, TextFeatures, token_mask_from_lengths
from tgsr.text import Vocabulary
from tgsr.training.common import console, train_loader
from tgsr.training.damsm import copy_damsm
from tgsr.training.run import Run

SHOW = ("g_total", "l2", "tar", "tic", "cgan", "d_total")  # on the progress bar


def needs_damsm(cfg: Config) -> bool:
    return cfg.generator.use_text or cfg.loss.tic > 0 or cfg.loss.cgan > 0


def conditioning_encoder(mode: str, frozen: torch.nn.Module, vocab_size: int, cfg: Config):
    """The text encoder whose features condition the generator: ``frozen`` itself, a trainable
    copy of it (``finetune``) or a new one (``scratch``); a trainable one has no dropout."""
    if mode == "frozen":
        return frozen
    if mode == "finetune":
        encoder = copy.deepcopy(frozen)
    else:
        tcfg = cfg.damsm.text_encoder
        embedding_dim = cfg.train.scratch_embedding_dim or tcfg.embedding_dim
        encoder = TextEncoder(replace(tcfg, embedding_dim=embedding_dim, dropout=0.0), vocab_size)
    encoder.dropout.p = 0.0
    encoder.requires_grad_(True)
    return encoder.train()


def load_frozen_damsm(path: str | Path, need_image_encoder: bool):
    """(text_encoder, image_encoder | None, vocab), frozen and in eval mode."""
    damsm, vocab = load_damsm(path)
    text_encoder, image_encoder = damsm.text_encoder, damsm.image_encoder
    modules = [text_encoder] + ([image_encoder] if need_image_encoder else [])
    for m in modules:
        m.eval()
        m.requires_grad_(False)
    return text_encoder, (image_encoder if need_image_encoder else None), vocab


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    generator: torch.nn.Module  # the final (EMA) generator, on every process
    text_encoder: torch.nn.Module | None = None  # the trained conditioning encoder, if any


# ----------------------------------------------------------------------------- set-up
@dataclass
class TextSide:
    """The vocabulary and the frozen, pre-trained DAMSM (paper §3.4), if the config needs one."""

    vocab: Vocabulary
    word_dim: int  # the size of the word features the generator reads
    text_encoder: nn.Module | None = None
    image_encoder: nn.Module | None = None  # only for the TIC loss


@dataclass
class Networks:
    """What the TGSR loop trains: the generator (+ the conditioning text encoder when it is
    trained, + the discriminator for cGAN), their optimizers and exponential moving averages."""

    generator: nn.Module
    cond_encoder: nn.Module | None  # whose features condition the generator (None: no text)
    train_text: bool  # cond_encoder is trained with the generator (not the frozen DAMSM)
    frozen_features: bool  # the frozen DAMSM's features are needed (conditioning, TIC or cGAN)
    discriminator: nn.Module | None
    memory_format: torch.memory_format
    g_params: list = field(default_factory=list)
    opt_g: torch.optim.Optimizer | None = None
    sched_g: torch.optim.lr_scheduler.LRScheduler | None = None
    opt_d: torch.optim.Optimizer | None = None
    ema: AveragedModel | None = None
    text_ema: AveragedModel | None = None

    def modules(self) -> dict[str, nn.Module]:
        """The networks a checkpoint holds, by name."""
        named = {"generator": self.generator, "discriminator": self.discriminator,
                 "text_encoder": self.cond_encoder if self.train_text else None,
                 "ema": self.ema, "text_ema": self.text_ema}  # fmt: skip
        return {k: m for k, m in named.items() if m is not None}

    def optimizers(self) -> dict:
        named = {"generator": self.opt_g, "discriminator": self.opt_d,
                 "scheduler_g": self.sched_g}  # fmt: skip
        return {k: o for k, o in named.items() if o is not None}


def _setup_text(cfg: Config, device) -> TextSide:
    """The frozen DAMSM where the config needs one (preflight made sure damsm.path is set)."""
    if not needs_damsm(cfg):
        return TextSide(build_vocabulary(cfg.data), 2 * cfg.damsm.text_encoder.hidden_dim)
    text_encoder, image_encoder, vocab = load_frozen_damsm(cfg.damsm.path, cfg.loss.tic > 0)
    text_encoder.to(device)
    if image_encoder is not None:
        image_encoder.to(device)
    return TextSide(vocab, text_encoder.feature_dim, text_encoder, image_encoder)


def _build_networks(cfg: Config, text: TextSide) -> Networks:
    """Fresh networks from torch's global RNG, always in the same order (same seed, same
    weights): generator, conditioning text encoder, discriminator."""
    generator = build_generator(cfg, text.word_dim)
    cond_encoder = None
    if text.text_encoder is not None and cfg.generator.use_text:
        mode = cfg.train.text_encoder
        cond_encoder = conditioning_encoder(mode, text.text_encoder, len(text.vocab), cfg)
    train_text = cond_encoder is not None and cfg.train.text_encoder != "frozen"
    discriminator = None
    if cfg.loss.cgan > 0:
        discriminator = Discriminator(
            cfg.discriminator, cfg.data.hr_size, cfg.data.scale, sentence_dim=text.word_dim
        )
    return Networks(
        generator, cond_encoder, train_text,
        frozen_features=not train_text or cfg.loss.tic > 0 or cfg.loss.cgan > 0,
        discriminator=discriminator,
        memory_format=torch.channels_last if cfg.train.channels_last else torch.contiguous_format,
    )  # fmt: skip


def _prepare_training(nets: Networks, tc, accelerator) -> None:
    """Optimizers, the warm-up schedule, the accelerator's wrapping, the EMA copies."""
    nets.generator.to(memory_format=nets.memory_format)
    nets.g_params = list(nets.generator.parameters())
    if nets.train_text:
        nets.cond_encoder.to(accelerator.device)
        nets.g_params += list(nets.cond_encoder.parameters())
    # foreach=True: one multi-tensor kernel per Adam op instead of a Python loop over the
    # parameters (the default on GPUs, not on CPUs); bit-identical results
    opt_g = torch.optim.Adam(
        nets.g_params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps,
        weight_decay=tc.weight_decay, foreach=True,
    )  # fmt: skip
    warmup = max(tc.warmup_steps, 1)
    nets.sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: min(1.0, (s + 1) / warmup))
    if nets.discriminator is not None:
        nets.discriminator.to(memory_format=nets.memory_format)
        opt_d = torch.optim.Adam(
            nets.discriminator.parameters(), lr=tc.d_lr, betas=tuple(tc.betas), foreach=True
        )
        nets.discriminator, nets.opt_d = accelerator.prepare(nets.discriminator, opt_d)
    nets.generator, nets.opt_g = accelerator.prepare(nets.generator, opt_g)  # loader: shards itself
    if nets.train_text:
        nets.cond_encoder = accelerator.prepare(nets.cond_encoder)
    if tc.ema_decay > 0:
        average = get_ema_multi_avg_fn(tc.ema_decay)
        nets.ema = AveragedModel(accelerator.unwrap_model(nets.generator),
                                 multi_avg_fn=average, use_buffers=True)  # fmt: skip
        if nets.train_text:
            nets.text_ema = AveragedModel(accelerator.unwrap_model(nets.cond_encoder),
                                          multi_avg_fn=average)  # fmt: skip


def _write_run_files(cfg: Config, run: Run, vocab: Vocabulary) -> None:
    run.save_config(cfg)
    run_dir = run.dir
    vocab.save(run_dir / "vocab.json")
    if cfg.damsm.path:
        copy_damsm(cfg.damsm.path, run_dir / "damsm")
    (run_dir / "samples").mkdir(exist_ok=True)


# ----------------------------------------------------------------------------- one step
def _to_device(batch: dict, device, memory_format) -> dict:
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v):
            v = v.to(device, non_blocking=True)
            if v.dim() == 4:
                v = v.contiguous(memory_format=memory_format)
        out[k] = v
    return out


def _encode(encoder, batch) -> TextFeatures:
    """Text features through ``encoder``'s forward (under DDP its gradients are all-reduced)."""
    words, sentence = encoder(batch["tokens"], batch["length"])
    mask = token_mask_from_lengths(batch["length"], batch["tokens"].shape[1])
    return TextFeatures(words, sentence, mask)


def _text_features(batch: dict, text: TextSide, nets: Networks):
    """(loss_text, cond): the features the losses read -- the frozen DAMSM's (TIC, cGAN) -- and
    those that condition the generator. TAR needs only the word mask, which both encoders share:
    ``loss_text`` is ``cond`` when the frozen DAMSM's features are not needed."""
    frozen = None
    if text.text_encoder is not None and nets.frozen_features:
        with torch.no_grad():
            frozen = text.text_encoder.encode(batch["tokens"], batch["length"])
    cond = _encode(nets.cond_encoder, batch) if nets.train_text else frozen
    return (frozen if frozen is not None else cond), cond


def _generate(generator, batch: dict, cond: TextFeatures | None, use_text: bool, accelerator):
    """The generator's forward pass (Fig. 2) on the LR images and the conditioning text."""
    words = cond.words if (cond is not None and use_text) else None
    mask = cond.token_mask if cond is not None else None
    sentence = cond.sentence if (cond is not None and use_text) else None
    with accelerator.autocast():
        return generator(batch["lq"], words, sentence, mask)


def _d_step(nets: Networks, suite: LossSuite, out, batch, text, step: int, run: Run) -> dict:
    """One discriminator update (Eq. 4's D side) when cGAN is on at ``step``; -> its losses."""
    if nets.discriminator is None or not suite.trains_discriminator(step):
        return {}
    with run.accelerator.autocast():
        d_loss, d_values = suite.discriminator_loss(out, batch, text, nets.discriminator)
    nets.opt_d.zero_grad(set_to_none=True)
    run.accelerator.backward(d_loss)
    if run.settings.grad_clip > 0:
        run.accelerator.clip_grad_norm_(nets.discriminator.parameters(), run.settings.grad_clip)
    nets.opt_d.step()
    return d_values


def _g_step(nets: Networks, suite: LossSuite, out, batch, pyramids, text, image_encoder,
            step: int, run: Run):  # fmt: skip
    """One generator (+ conditioning encoder) update on Eq. 3's loss; -> (its losses, the
    gradient norm before clipping or None)."""
    gt_levels, lowpass_levels = pyramids
    with run.accelerator.autocast():
        g_loss, g_values = suite.generator_loss(
            out, batch, gt_levels, lowpass_levels, text,
            damsm_image_encoder=image_encoder, discriminator=nets.discriminator, step=step,
        )  # fmt: skip
    nets.opt_g.zero_grad(set_to_none=True)
    run.accelerator.backward(g_loss)
    grad_norm = None
    if run.settings.grad_clip > 0:
        grad_norm = run.accelerator.clip_grad_norm_(nets.g_params, run.settings.grad_clip)
    nets.opt_g.step()
    nets.sched_g.step()
    return g_values, grad_norm


def _update_averages(nets: Networks, step: int, ema_start: int, accelerator) -> None:
    """The EMA copies follow the live networks (a plain copy up to ``ema_start``)."""
    if accelerator.num_processes > 1:  # BatchNorm statistics: rank 0's everywhere,
        for buf in accelerator.unwrap_model(nets.generator).buffers():  # so EMA copies agree
            torch.distributed.broadcast(buf, src=0)
    for avg, live in ((nets.ema, nets.generator), (nets.text_ema, nets.cond_encoder)):
        if avg is None:
            continue
        if step <= ema_start:
            avg.module.load_state_dict(accelerator.unwrap_model(live).state_dict())
        else:
            avg.update_parameters(accelerator.unwrap_model(live))


def _log_step(run: Run, values: dict, dt: float, lr: float, grad_norm) -> dict[str, float]:
    """Losses under ``train/``, step time, learning rate and gradient norm under ``perf/``."""
    values = {k: float(v) for k, v in values.items()}
    run.log.add(run.step, values, "train/")
    perf = {"ms_per_step": dt * 1000, "lr": lr}
    if grad_norm is not None:
        perf["g_grad_norm"] = float(grad_norm)
    run.log.add(run.step, perf, "perf/")
    return values


def _grid_row(batch, out, n: int = 4) -> np.ndarray:
    """LR (nearest) | coarse | fine | GT for the first ``n`` samples, one uint8 image."""
    gt = batch["gt"][:n].float()
    lq = F.interpolate(batch["lq"][:n].float(), size=gt.shape[-2:], mode="nearest")
    cols = [lq, out.coarse[-1][:n].float(), out.sr[:n].float(), gt]
    grid = torch.cat([torch.cat(list(c), dim=1) for c in cols], dim=2)  # (3, n*H, 4*W)
    return grid.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def _attention_row(attn: torch.Tensor, max_words: int = 8) -> np.ndarray:
    """(T, h, w) word maps -> one uint8 strip, each map min-max normalised (padding is zero)."""
    maps = attn[:max_words].float()
    lo = maps.flatten(1).min(1).values[:, None, None]
    hi = maps.flatten(1).max(1).values[:, None, None]
    maps = (maps - lo) / (hi - lo).clamp(min=1e-8)
    strip = torch.cat(list(maps), dim=1)  # (h, T*w)
    return strip.mul(255).byte().unsqueeze(-1).expand(-1, -1, 3).cpu().numpy()


def _save_images(run: Run, batch, out) -> None:
    """LR | coarse | fine | GT (and the last TAM's word maps) to TensorBoard and RUN/samples."""
    row = _grid_row(batch, out)
    run.log.image("samples/lq_coarse_fine_gt", row, run.step)
    if out.attn:  # per-word maps of the last TAM for the first sample
        run.log.image("samples/word_attention", _attention_row(out.attn[-1][0]), run.step)
    Image.fromarray(row).save(run.dir / "samples" / f"step_{run.step:07d}.png")


def _due(step: int, every: int) -> bool:
    """Whether something done every ``every`` steps (0: never) is due at ``step``."""
    return bool(every) and step % every == 0


def _call_eval(on_eval, step: int, nets: Networks) -> None:
    g = nets.ema.module if nets.ema is not None else extract_model_from_parallel(nets.generator)
    t = None
    if nets.train_text:
        t = (nets.text_ema.module if nets.text_ema is not None
             else extract_model_from_parallel(nets.cond_encoder))  # fmt: skip
    modes = [(m, m.training) for m in (g, t) if m is not None]
    for m, _ in modes:
        m.eval()
    with torch.no_grad():
        on_eval(step, g, t)
    for m, was in modes:
        m.train(was)


# ----------------------------------------------------------------------------- the loop
def fit(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    cpu: bool | None = None,
    on_eval: Callable[[int, torch.nn.Module, torch.nn.Module | None], None] | None = None,
    overwrite: bool = False,
    resume_command: str | None = None,
) -> TrainResult:
    """Train TGSR as ``cfg`` says; write the run folder (docs/architecture.md).

    A ``run_dir`` that already holds a run is refused unless ``resume`` (go on from its newest
    checkpoint; a run already at ``train.max_steps`` is left as it is) or ``overwrite`` (its
    files are removed first, once every check passed). ``resume_command``: the command printed
    after a stop by a signal to continue (``tgsr train`` passes its own).

    ``on_eval(step, generator, text_encoder)``, if given, is called on the main process every
    ``train.eval_every`` steps (and after the last) with the EMA generator and the EMA
    conditioning text encoder (None with the frozen DAMSM's features), both in eval mode and
    switched back to train mode afterwards (used by the benchmarks for learning curves)."""
    tc, data = cfg.train, cfg.data
    run = Run(run_dir, tc, data, title=cfg.name, resume=resume, progress=progress, cpu=cpu,
              threads=tc.torch_threads, need_damsm=needs_damsm(cfg), damsm_path=cfg.damsm.path,
              show=SHOW, overwrite=overwrite, config=cfg, section="train",
              resume_command=resume_command)  # fmt: skip
    text = _setup_text(cfg, run.device)
    loader = train_loader(data, text.vocab, tc.batch_size, "train.batch_size", seed=tc.seed)
    nets = _build_networks(cfg, text)
    suite = LossSuite(cfg.loss, cfg.generator, cfg.damsm, degradation=data.degradation)
    _prepare_training(nets, tc, run.accelerator)
    run.restore(nets.modules(), nets.optimizers(), loader)
    if run.nothing_to_train:  # resumed at or past max_steps: nothing to train
        if run.final_save_complete:  # the run folder stays as it is
            return _unchanged(run, nets)
        return _finish(cfg, run, nets, text.vocab)  # a killed final save, written again
    if run.main:
        _write_run_files(cfg, run, text.vocab)
    for m in (nets.generator, nets.discriminator):
        if m is not None:
            m.train()
    values: dict[str, float] = {}
    with run.loop(loader) as batches:
        for batch in batches:
            batch = _to_device(batch, run.device, nets.memory_format)
            loss_text, cond = _text_features(batch, text, nets)
            with torch.no_grad():
                pyramids = build_pyramids(batch["gt"], data.scale, data.lowpass_sigma,
                                          data.degradation)  # fmt: skip
            out = _generate(nets.generator, batch, cond, cfg.generator.use_text, run.accelerator)
            d_values = _d_step(nets, suite, out, batch, loss_text, run.step + 1, run)
            g_values, grad_norm = _g_step(nets, suite, out, batch, pyramids, loss_text,
                                          text.image_encoder, run.step + 1, run)  # fmt: skip
            dt = run.advance()
            _update_averages(nets, run.step, tc.ema_start, run.accelerator)
            if _due(run.step, tc.log_every) or run.step == 1:
                lr = nets.sched_g.get_last_lr()[0]
                values = _log_step(run, {**g_values, **d_values}, dt, lr, grad_norm)
            if run.main and _due(run.step, tc.image_every):
                _save_images(run, batch, out)
            run.end_step(dt, values)
            if on_eval is not None and run.main and _due(run.step, tc.eval_every):
                _call_eval(on_eval, run.step, nets)
    if on_eval is not None and run.main and not _due(run.step, tc.eval_every):
        _call_eval(on_eval, run.step, nets)
    run.checkpoint()
    return _finish(cfg, run, nets, text.vocab)


def _finish(cfg: Config, run: Run, nets: Networks, vocab: Vocabulary) -> TrainResult:
    """The final (EMA) generator and conditioning text encoder, saved; the run summary."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    final = nets.ema.module if nets.ema is not None else accelerator.unwrap_model(nets.generator)
    final_text = None
    if nets.train_text:
        final_text = nets.text_ema.module if nets.text_ema is not None else nets.cond_encoder
        final_text = accelerator.unwrap_model(final_text).eval()
    if run.main:
        save_generator(final, run.dir / "generator")
        if nets.train_text:
            save_text_encoder(final_text, run.dir / "text_encoder", vocab)
        run.write_summary()
        normal = f"{cfg.name}: {run.step} steps in {run.watch.elapsed / 60:.1f} min -> {run.dir}"
        console.print(run.finish_line(normal, f"checkpoint and generator in {run.dir}"),
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    run.close()
    return TrainResult(run.dir, run.step, final.eval(), final_text)


def _unchanged(run: Run, nets: Networks) -> TrainResult:
    """The result of a resume with nothing to train: the checkpoint's (EMA) networks."""
    unwrap = run.accelerator.unwrap_model
    final = nets.ema.module if nets.ema is not None else unwrap(nets.generator)
    final_text = None
    if nets.train_text:
        final_text = unwrap(nets.text_ema.module if nets.text_ema is not None
                            else nets.cond_encoder).eval()  # fmt: skip
    run.close()
    return TrainResult(run.dir, run.step, final.eval(), final_text)
