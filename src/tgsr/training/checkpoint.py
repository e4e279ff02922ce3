"""Atomic, resumable training checkpoints.

A checkpoint is a folder::

    checkpoints/last/
      models.safetensors      every network's weights, keys prefixed "<name>."
      optimizers.pt           optimizer states (tensors only; loaded with weights_only=True)
      state.json              step, elapsed time, RNG states (JSON), format_version

It is written to a temporary sibling folder and moved into place with ``os.replace``, so a
crash or a kill while writing never leaves a half-written ``last/``: the previous one stays.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tgsr.errors import ModelFormatError

CHECKPOINT_FORMAT_VERSION = 1


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": repr(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def _set_rng_state(state: dict) -> None:
    import ast

    random.setstate(ast.literal_eval(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def save_checkpoint(
    folder: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict,
) -> Path:
    """Write ``folder`` atomically. ``state`` must be JSON-serialisable (step, elapsed ...)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(tmp / "models.safetensors"))
    torch.save({k: opt.state_dict() for k, opt in optimizers.items()}, tmp / "optimizers.pt")
    payload = {"format_version": CHECKPOINT_FORMAT_VERSION, **state, "rng": _rng_state()}
    (tmp / "state.json").write_text(json.dumps(payload))
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def load_checkpoint(
    folder: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    restore_rng: bool = True,
) -> dict:
    """Load weights (strict) and optimizer states into the given objects; returns ``state``."""
    folder = Path(folder)
    for name in ("models.safetensors", "state.json"):
        if not (folder / name).is_file():
            raise ModelFormatError(f"{folder}: not a tgsr checkpoint ({name} is missing)")
    state = json.loads((folder / "state.json").read_text())
    if state.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ModelFormatError(
            f"{folder}: unsupported checkpoint format_version {state.get('format_version')}"
        )
    tensors = load_file(str(folder / "models.safetensors"))
    for name, module in modules.items():
        prefix = f"{name}."
        sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sd:
            raise ModelFormatError(f"{folder}: checkpoint holds no weights for {name!r}")
        try:
            missing, unexpected = module.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # shape mismatch
            first = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
            raise ModelFormatError(
                f"{folder}: {name!r} does not match the config ({first})"
            ) from None
        if missing or unexpected:
            raise ModelFormatError(
                f"{folder}: {name!r} does not match the config "
                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
            )
    if optimizers:
        opt_path = folder / "optimizers.pt"
        if not opt_path.is_file():
            raise ModelFormatError(f"{folder}: optimizers.pt is missing")
        opt_states = torch.load(opt_path, map_location="cpu", weights_only=True)
        for name, opt in optimizers.items():
            if name in opt_states:
                opt.load_state_dict(opt_states[name])
    if restore_rng and "rng" in state:
        _set_rng_state(state["rng"])
    return state


class Stopwatch:
    """Wall-clock budget that survives resumes (``elapsed`` is restored from the checkpoint)."""

    def __init__(self, elapsed: float = 0.0):
        self.start = time.monotonic() - elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start
