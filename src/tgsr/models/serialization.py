"""Component folders: ``model.safetensors`` + ``config.json`` (+ ``vocab.json`` for text).

``config.json`` = ``{"format_version": 1, "kind": "...", "config": {constructor args}, ...extras}``:
the module's config dataclass as it is, plus the constructor's other arguments (a generator's
``GeneratorConfig`` + ``scale`` and ``word_dim``; a text encoder's ``TextEncoderConfig`` +
``vocab_size``; an image encoder's ``ImageEncoderConfig``). This is the layout folders have always
had (the text encoder's hand-built dict held exactly these keys), so older folders load as they are.
Files are written atomically (:func:`tgsr.files.atomic_write`), weights first, so a folder with
a ``config.json`` is complete. Loading is strict: every problem is one :class:`ModelFormatError`
line naming the folder. Nothing is pickled.

A DAMSM folder holds ``text_encoder/``, ``image_encoder/``, ``vocab.json`` and a ``config.json``
of kind ``damsm`` with the γ values (no weights of its own).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tgsr.config import (
    ConfigError,
    DAMSMConfig,
    GeneratorConfig,
    ImageEncoderConfig,
    TextEncoderConfig,
    section_from_dict,
)
from tgsr.errors import ModelFormatError
from tgsr.files import atomic_write
from tgsr.models.damsm import DAMSM
from tgsr.models.factory import build_generator
from tgsr.models.image_encoder import build_image_encoder
from tgsr.models.text_encoder import TextEncoder
from tgsr.text import Vocabulary

COMPONENT_FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.json"
_RESERVED = {"format_version", "kind", "config"}


def _write_json(path: Path, payload: dict) -> None:
    atomic_write(path, json.dumps(payload, indent=2) + "\n")


def save_component(
    module: nn.Module, directory: str | Path, kind: str, config: dict, extra: dict | None = None
) -> Path:
    """Write ``module``'s state dict and its config into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    clash = _RESERVED & set(extra)
    if clash:
        raise ValueError(f"extra keys {sorted(clash)} are reserved")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(
        directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"kind": kind})
    )
    payload = {"format_version": COMPONENT_FORMAT_VERSION, "kind": kind, "config": config, **extra}
    _write_json(directory / CONFIG_NAME, payload)
    return directory


def _read_config(directory: Path, expected_kind: str) -> tuple[dict, dict]:
    if not directory.is_dir():
        raise ModelFormatError(f"model folder not found: {directory}")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ModelFormatError(f"{directory}: missing {CONFIG_NAME}")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise ModelFormatError(f"{path}: not a tgsr component config (no 'config' mapping)")
    version = payload.get("format_version")
    if version != COMPONENT_FORMAT_VERSION:
        raise ModelFormatError(
            f"{directory}: unsupported format_version {version!r} (this tgsr reads {COMPONENT_FORMAT_VERSION})"
        )
    kind = payload.get("kind")
    if kind != expected_kind:
        raise ModelFormatError(f"{directory} holds a {kind!r}, expected a {expected_kind!r}")
    extra = {k: v for k, v in payload.items() if k not in _RESERVED}
    return payload["config"], extra


def load_component(
    directory: str | Path, expected_kind: str
) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """-> (state_dict, config dict, extra dict). Checks the folder, kind and format version."""
    directory = Path(directory)
    config, extra = _read_config(directory, expected_kind)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelFormatError(f"{directory}: missing {WEIGHTS_NAME}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFormatError(f"{weights}: corrupt or not a safetensors file ({msg})") from None
    return state, config, extra


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str | Path) -> None:
    """Strict ``load_state_dict`` with a one-line :class:`ModelFormatError` naming the first keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [
        f"{k} (saved {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatch", bad),
    ):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(keys[:3])}{more}")
    if problems:
        raise ModelFormatError(f"{where}: weights do not match the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def _section(cls: type, data: dict, where: Path, prefix: str) -> Any:
    try:
        return section_from_dict(cls, data, prefix)
    except ConfigError as exc:
        raise ModelFormatError(f"{where}/{CONFIG_NAME}: {exc}") from None


def _pop_required(config: dict, keys: tuple[str, ...], where: Path) -> list:
    missing = [k for k in keys if k not in config]
    if missing:
        raise ModelFormatError(f"{where}/{CONFIG_NAME}: config lacks {', '.join(missing)}")
    return [config.pop(k) for k in keys]


# ----------------------------------------------------------------------------- generator


def generator_config_dict(generator: nn.Module) -> dict:
    """A generator folder's ``config``: the constructor's arguments, its ``GeneratorConfig``
    as it is plus ``scale`` and ``word_dim``."""
    return {"scale": generator.scale, "word_dim": generator.word_dim, **asdict(generator.config)}


def save_generator(generator: nn.Module, directory: str | Path, extra: dict | None = None) -> Path:
    return save_component(
        generator, directory, "generator", generator_config_dict(generator), extra
    )


def load_generator(directory: str | Path) -> nn.Module:
    """A generator folder -> the generator in eval mode. Folders of earlier versions (keys
    ``coord_channels`` / ``subpixel_coords`` / ``sentence_cond: false``) load as well."""
    directory = Path(directory)
    state, config, _ = load_component(directory, "generator")
    config = dict(config)
    scale, word_dim = _pop_required(config, ("scale", "word_dim"), directory)
    gcfg = _section(GeneratorConfig, config, directory, "generator")
    try:
        generator = build_generator(gcfg, word_dim, scale)
    except (TypeError, ValueError) as exc:  # ConfigError included
        raise ModelFormatError(f"{directory}: cannot build the generator ({exc})") from None
    load_state_strict(generator, state, directory)
    return generator.eval()


# ----------------------------------------------------------------------------- text encoder


def text_encoder_config_dict(text_encoder: nn.Module) -> dict:
    """A text encoder folder's ``config``: ``vocab_size`` and its ``TextEncoderConfig``."""
    return {"vocab_size": text_encoder.vocab_size, **asdict(text_encoder.config)}


def save_text_encoder(
    text_encoder: nn.Module, directory: str | Path, vocab: Vocabulary | None = None
) -> Path:
    config = text_encoder_config_dict(text_encoder)
    directory = save_component(text_encoder, directory, "text_encoder", config)
    if vocab is not None:
        if len(vocab) != text_encoder.vocab_size:
            raise ValueError(
                f"vocabulary has {len(vocab)} words, the encoder {text_encoder.vocab_size}"
            )
        vocab.save(directory / VOCAB_NAME)
    return directory


def _load_vocab(path: Path) -> Vocabulary:
    try:
        return Vocabulary.load(path)
    except (OSError, ValueError) as exc:
        raise ModelFormatError(str(exc)) from None


def load_text_encoder(directory: str | Path) -> tuple[nn.Module, Vocabulary | None]:
    """-> (TextEncoder in eval mode, the folder's vocab.json or None when absent)."""
    directory = Path(directory)
    state, config, _ = load_component(directory, "text_encoder")
    config = dict(config)
    (vocab_size,) = _pop_required(config, ("vocab_size",), directory)
    tcfg = _section(TextEncoderConfig, config, directory, "text_encoder")
    try:
        encoder = TextEncoder(tcfg, vocab_size)
    except ValueError as exc:  # ConfigError included
        raise ModelFormatError(f"{directory}: cannot build the text encoder ({exc})") from None
    load_state_strict(encoder, state, directory)
    vocab = None
    if (directory / VOCAB_NAME).is_file():
        vocab = _load_vocab(directory / VOCAB_NAME)
        if len(vocab) != vocab_size:
            raise ModelFormatError(
                f"{directory}: vocab.json has {len(vocab)} words, the encoder {vocab_size}"
            )
    return encoder.eval(), vocab


# ----------------------------------------------------------------------------- image encoder / DAMSM


def save_image_encoder(
    image_encoder: nn.Module, directory: str | Path, cfg: ImageEncoderConfig | None = None
) -> Path:
    """``cfg``: the encoder's ``ImageEncoderConfig`` (default: ``image_encoder.config``)."""
    cfg = image_encoder.config if cfg is None else cfg
    return save_component(image_encoder, directory, "image_encoder", asdict(cfg))


def load_image_encoder(directory: str | Path) -> nn.Module:
    directory = Path(directory)
    state, config, _ = load_component(directory, "image_encoder")
    cfg = _section(ImageEncoderConfig, config, directory, "image_encoder")
    try:  # load_weights=False: the folder holds the whole backbone
        encoder = build_image_encoder(cfg, load_weights=False)
    except ValueError as exc:  # ConfigError included
        raise ModelFormatError(f"{directory}: cannot build the image encoder ({exc})") from None
    load_state_strict(encoder, state, directory)
    return encoder.eval()


def save_damsm(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    directory: str | Path,
    vocab: Vocabulary,
    damsm_cfg: DAMSMConfig,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_text_encoder(text_encoder, directory / "text_encoder")
    save_image_encoder(image_encoder, directory / "image_encoder")  # its own config
    if len(vocab) != text_encoder.vocab_size:
        raise ValueError(
            f"vocabulary has {len(vocab)} words, the encoder {text_encoder.vocab_size}"
        )
    vocab.save(directory / VOCAB_NAME)
    gammas = {"gamma1": damsm_cfg.gamma1, "gamma2": damsm_cfg.gamma2, "gamma3": damsm_cfg.gamma3}
    _write_json(
        directory / CONFIG_NAME,
        {"format_version": COMPONENT_FORMAT_VERSION, "kind": "damsm", "config": gammas},
    )
    return directory


def load_damsm(directory: str | Path) -> tuple[nn.Module, Vocabulary]:
    """-> (DAMSM with both encoders in eval mode, vocabulary)."""
    directory = Path(directory)
    config, _ = _read_config(directory, "damsm")
    text_encoder, _ = load_text_encoder(directory / "text_encoder")
    image_encoder = load_image_encoder(directory / "image_encoder")
    if not (directory / VOCAB_NAME).is_file():
        raise ModelFormatError(f"{directory}: missing {VOCAB_NAME}")
    vocab = _load_vocab(directory / VOCAB_NAME)
    if len(vocab) != text_encoder.vocab_size:
        raise ModelFormatError(
            f"{directory}: vocab.json has {len(vocab)} words, the encoder {text_encoder.vocab_size}"
        )
    try:
        gammas = {k: float(config[k]) for k in ("gamma1", "gamma2", "gamma3")}
    except (KeyError, TypeError, ValueError):
        raise ModelFormatError(
            f"{directory}/{CONFIG_NAME}: needs numeric gamma1, gamma2, gamma3"
        ) from None
    return DAMSM(text_encoder, image_encoder, **gammas).eval(), vocab
