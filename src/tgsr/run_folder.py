"""Reading a training run folder: its config, generator, text encoder and vocabulary.

A run folder (``docs/architecture.md``) holds the resolved ``config.yaml``, the EMA generator
(``generator/``, written when training ends), a copy of the DAMSM (``damsm/``), the trained text
encoder when it was trained (``text_encoder/``), ``vocab.json`` and ``checkpoints/``. When training
did not finish, the generator (and a trained text encoder) come from the newest checkpoint that
verifies. Inference needs only what :func:`read_run` returns; :func:`tgsr.pipeline.pipeline_from_run`
wraps it as a pipeline and ``tgsr export`` writes that pipeline's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from tgsr.config import Config, ConfigError, load_config
from tgsr.errors import ModelFormatError
from tgsr.models import TextEncoder, build_generator
from tgsr.models.serialization import load_generator, load_state_strict, load_text_encoder
from tgsr.text import Vocabulary
from tgsr.training.checkpoint import checkpoint_candidates, verify_checkpoint

__all__ = ["RunModel", "load_run_config", "read_run", "run_text_encoder"]


def _not_a_run(run: Path) -> str:
    """Why ``run`` is no training run folder; a pipeline folder (``tgsr export``, no data config
    nor training DAMSM) is named as such, with the run it was exported from."""
    meta = run / "pipeline.json"
    if not meta.is_file():
        return f"{run}: not a training run folder (no config.yaml)"
    try:
        source = json.loads(meta.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        source = None
    hint = f" (this one was exported from {source})" if source else ""
    return (f"{run} is a pipeline folder; this needs the training run folder it was exported "
            f"from{hint}")  # fmt: skip


@dataclass
class RunModel:
    """What inference needs from a run folder (modules in eval mode, CPU, float32)."""

    path: Path
    config: Config
    generator: nn.Module
    text_encoder: nn.Module | None  # None for a no-text generator
    vocab: Vocabulary | None


def load_run_config(run: Path) -> Config:
    path = run / "config.yaml"
    if not path.is_file():
        raise ModelFormatError(_not_a_run(run))
    try:
        return load_config(path)
    except ConfigError as exc:  # errors reading the file name it already; others get its name
        msg = str(exc)
        raise ModelFormatError(msg if str(path) in msg else f"{path}: {msg}") from None


def _checkpoint_folder(run: Path, what: str) -> Path:
    """The newest checkpoint of ``run`` that verifies (``checkpoints/last``, else an older
    ``step_*`` one, e.g. after a kill between the two renames of a checkpoint write)."""
    damaged: list[str] = []
    for folder in checkpoint_candidates(run / "checkpoints"):  # newest first
        try:
            verify_checkpoint(folder)
            return folder
        except ModelFormatError as exc:
            damaged.append(str(exc))
    if damaged:  # checkpoints were written but are damaged: say which file and how
        more = f" (and {len(damaged) - 1} older damaged one(s))" if len(damaged) > 1 else ""
        raise ModelFormatError(
            f"{run}: no {what}/ folder and no usable checkpoint: {damaged[0]}{more}"
        )
    raise ModelFormatError(
        f"{run}: no {what}/ folder and no usable checkpoint in checkpoints/ "
        "(training never saved a model)"
    )


def _state_from_checkpoint(run: Path, prefixes: tuple[str, ...], what: str) -> dict:
    """The first of ``prefixes`` found in the newest valid checkpoint as a plain state dict (an
    EMA's ``module.`` prefix and ``n_averaged`` counter removed)."""
    weights = _checkpoint_folder(run, what) / "models.safetensors"
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{weights}: corrupt checkpoint ({exc})") from None
    for prefix in prefixes:
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if state:
            state.pop("n_averaged", None)
            return {k.removeprefix("module."): v for k, v in state.items()}
    raise ModelFormatError(f"{weights}: holds no {what} weights")


def _generator_from_checkpoint(run: Path, cfg: Config) -> nn.Module:
    """The EMA (else the raw) generator from the newest valid checkpoint when training did not
    finish."""
    state = _state_from_checkpoint(run, ("ema.", "generator."), "generator")
    word_dim = 2 * cfg.damsm.text_encoder.hidden_dim
    generator = build_generator(cfg, word_dim)
    load_state_strict(generator, state, run / "checkpoints")
    return generator.eval()


def _damsm_dir(run: Path, cfg: Config) -> Path:
    """The run's copy of its DAMSM, else the one its config names."""
    damsm = run / "damsm"
    if not damsm.is_dir() and cfg.damsm.path:
        damsm = Path(cfg.damsm.path)
    return damsm


def run_text_encoder(run: Path, cfg: Config):
    """The text encoder that conditions a run's generator, and the vocabulary saved with it
    (or None), as :func:`~tgsr.models.serialization.load_text_encoder` returns them: the DAMSM's
    (``train.text_encoder: frozen``), else the trained ``RUN/text_encoder`` (or, when training
    did not finish, the one in the newest valid checkpoint)."""
    if cfg.train.text_encoder == "frozen":
        damsm = _damsm_dir(run, cfg)
        if not (damsm / "text_encoder").is_dir():
            raise ModelFormatError(f"{run}: no damsm/text_encoder folder (needed for the text)")
        return load_text_encoder(damsm / "text_encoder")
    if (run / "text_encoder" / "config.json").is_file():
        return load_text_encoder(run / "text_encoder")
    state = _state_from_checkpoint(run, ("text_ema.", "text_encoder."), "text_encoder")
    if "embedding.weight" not in state:
        raise ModelFormatError(f"{run}/checkpoints: the text encoder has no embedding.weight")
    vocab_size, embedding_dim = state["embedding.weight"].shape
    tcfg = replace(cfg.damsm.text_encoder, embedding_dim=embedding_dim, dropout=0.0)
    encoder = TextEncoder(tcfg, vocab_size)
    load_state_strict(encoder, state, run / "checkpoints")
    return encoder.eval(), None


def read_run(run_dir: str | Path) -> RunModel:
    """The config, generator, text encoder and vocabulary of a training run folder."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ModelFormatError(f"run folder not found: {run}")
    cfg = load_run_config(run)
    if (run / "generator" / "config.json").is_file():
        generator = load_generator(run / "generator")
    else:
        generator = _generator_from_checkpoint(run, cfg)
    if generator.scale != cfg.data.scale:
        raise ModelFormatError(
            f"{run}: config.yaml says x{cfg.data.scale} but generator/ is x{generator.scale}"
        )
    text_encoder = vocab = None
    if cfg.generator.use_text:
        text_encoder, encoder_vocab = run_text_encoder(run, cfg)
        vocab_path = run / "vocab.json"
        if not vocab_path.is_file():
            vocab_path = _damsm_dir(run, cfg) / "vocab.json"
        try:
            vocab = Vocabulary.load(vocab_path)
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"{run}: {exc}") from None
        if encoder_vocab is not None and encoder_vocab != vocab:
            raise ModelFormatError(f"{run}: vocab.json differs from the text encoder's vocabulary")
    return RunModel(run, cfg, generator, text_encoder, vocab)
