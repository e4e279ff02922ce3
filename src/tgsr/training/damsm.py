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

from tgsr.config import Config
from tgsr.data.loader import build_vocabulary
from tgsr.errors import TGSRError
from tgsr.models.damsm import damsm_loss
from tgsr.models.image_encoder import build_image_encoder
from tgsr.models.serialization import save_damsm
from tgsr.models.text_encoder import TextEncoder
from tgsr.text import Vocabulary
from tgsr.training.common import console, train_loader
from tgsr.training.run import Run


def build_damsm_modules(cfg: Config, vocab_size: int):
    text_encoder = TextEncoder(cfg.damsm.text_encoder, vocab_size)
    image_encoder = build_image_encoder(cfg.damsm.image_encoder)
    return text_encoder, image_encoder


SINGLE_CLASS = (
    "every other caption in the batch is of the same class: the DAMSM losses are 0 and it "
    "learns nothing; use more classes / a larger batch"
)


def _classes(dataset) -> set | None:
    """The class ids of a data set's records (None when it has no records, e.g. synthetic)."""
    records = getattr(dataset, "records", None)
    if not records:
        return None
    return {getattr(r, "class_id", None) for r in records}


def _check_vocabulary(run_dir: Path, vocab: Vocabulary) -> None:
    """On --resume: the vocabulary rebuilt from the data must be the run's (``vocab.json``, saved
    when a session ends; without it a changed size is still caught when the checkpoint loads)."""
    path = run_dir / "vocab.json"
    try:
        old = Vocabulary.load(path)
    except (OSError, ValueError):
        return
    if old != vocab:
        differ = len(set(old.words) ^ set(vocab.words))
        raise TGSRError(
            f"--resume: the vocabulary is rebuilt from the training captions and now has "
            f"{len(vocab)} words, the run's {len(old)} ({differ} word(s) not in both, {path}): "
            "the data differs from the run's; resume with the same data or train into a new --out"
        )


def _single_class(class_id: torch.Tensor | None) -> bool:
    """Whether a batch's captions are all of one class (every negative masked: the losses are
    0 and nothing is learned)."""
    return class_id is not None and class_id.numel() > 1 and bool((class_id == class_id[0]).all())


def _warn(run: Run, text: str) -> None:
    if run.main:
        console.print(f"warning: {text}", style="yellow", markup=False, highlight=False,
                      soft_wrap=True)  # fmt: skip


def _save(run: Run, text_encoder, image_encoder, vocab, cfg: Config, single: int) -> None:
    """The DAMSM folder, the summary and the last line (main process); ``single``: steps whose
    batch had a single class."""
    te = run.accelerator.unwrap_model(text_encoder).eval()
    ie = run.accelerator.unwrap_model(image_encoder).eval()
    save_damsm(te, ie, run.dir, vocab, cfg.damsm)
    trained = run.step - (run.state["step"] if run.state is not None else 0)
    learned_nothing = bool(single) and single == trained
    if learned_nothing:
        run.warnings.append(f"every one of the {trained} batches had a single class: the DAMSM "
                            "learned nothing; use more classes / a larger batch")  # fmt: skip
    run.write_summary(single_class_batches=single)
    normal = (f"DAMSM saved to {run.dir} after {run.step} steps "
              f"({run.watch.elapsed / 60:.1f} min); {vocab.oov_report()}")  # fmt: skip
    console.print(run.finish_line(normal, f"DAMSM saved to {run.dir}"), markup=False,
                  highlight=False, soft_wrap=True)  # fmt: skip
    if learned_nothing:
        _warn(run, run.warnings[-1])


def train_damsm(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    cpu: bool | None = None,
    overwrite: bool = False,
    resume_command: str | None = None,
) -> Path:
    """Train a DAMSM pair on ``cfg.data`` and save it to ``out_dir`` (a DAMSM folder).

    As :func:`~tgsr.training.trainer.fit`: an ``out_dir`` holding a run needs ``resume`` (which
    needs a checkpoint) or ``overwrite``; nothing is created before the data is checked."""
    tc = cfg.damsm_train
    run = Run(out_dir, tc, cfg.data, title="DAMSM", resume=resume, progress=progress, cpu=cpu,
              threads=cfg.train.torch_threads, show=("loss",), overwrite=overwrite, config=cfg,
              section="damsm_train", resume_command=resume_command)  # fmt: skip
    accelerator = run.accelerator
    vocab = build_vocabulary(cfg.data)
    if run.resume:
        _check_vocabulary(run.dir, vocab)
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
    run.restore(modules, {"optimizer": optimizer}, loader, vocab_size=len(vocab))
    if run.nothing_to_train:  # resumed at or past max_steps: nothing to train
        if run.main and not run.final_save_complete:  # a killed final save, written again
            run.save_config(cfg)
            _save(run, text_encoder, image_encoder, vocab, cfg, 0)
        run.close()
        return run.dir
    run.save_config(cfg)
    classes = _classes(loader.dataset)
    if classes is not None and len(classes) == 1 and tc.batch_size > 1:
        run.warnings.append(f"the training set has a single class: {SINGLE_CLASS}")
        _warn(run, run.warnings[-1])  # and at the first such batch otherwise (below)
    single = 0  # steps whose batch had a single class (every negative masked: losses 0)
    text_encoder.train()
    image_encoder.train()
    values: dict[str, float] = {}
    with run.loop(loader) as batches:
        for batch in batches:
            if _single_class(batch.get("class_id")):
                single += 1
                if not run.warnings:
                    run.warnings.append(f"a batch had a single class: {SINGLE_CLASS}")
                    _warn(run, f"step {run.step + 1}: {SINGLE_CLASS}")
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
        _save(run, text_encoder, image_encoder, vocab, cfg, single)
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
