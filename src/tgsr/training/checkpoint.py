"""Crash-safe, exactly resumable training checkpoints.

A checkpoint is a folder::

    checkpoints/last/            the newest one
      models.safetensors         every network's weights, keys prefixed "<name>."
      optimizers.pt              optimizer / scheduler / grad-scaler states (tensors and plain
                                 values only; loaded with weights_only=True)
      state.json                 step, elapsed time, loss history, data position, per-process
                                 RNG states and the size + SHA-256 of the two files above;
                                 written last, so its presence marks a complete checkpoint
    checkpoints/step_00001000/   older ones (``keep`` in all, default 2)

Writing (what PyTorch Lightning, HF Trainer and Accelerate do, plus checksums): everything goes
to a temporary sibling folder, each file is fsync'ed, then the current ``last/`` is renamed to
``step_<its step>/`` and the new folder renamed to ``last/`` (each rename is atomic), and the
oldest folders beyond ``keep`` are removed. A kill or a full disk at any moment leaves at least
one complete checkpoint; a failed write removes its temporary folder and raises one line.

Reading: :func:`verify_checkpoint` checks the files against the sizes and hashes in
``state.json`` (a truncated or corrupt file is one :class:`ModelFormatError` line), and
:func:`latest_checkpoint` returns the newest checkpoint that verifies, so ``--resume`` skips a
damaged ``last/`` with a one-line warning.

Exact resume (bit-identical on the CPU with ``data.num_workers: 0``) needs the whole random
state: Python, NumPy, torch (CPU and CUDA) RNGs of every process, the position in the data
stream and any state of the data set itself. The data order is a pure function of
``(seed, epoch)`` (:class:`ShuffledBatches`), so the position is just the number of batches
taken, and resuming skips them without loading a single image.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tgsr.errors import ModelFormatError, TGSRError

CHECKPOINT_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no checksums, one RNG state
STEP_DIR = re.compile(r"^step_(\d+)$")
TMP_PREFIX = ".tmp-"
FILES = ("models.safetensors", "optimizers.pt")


# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """This process's Python, NumPy and torch (CPU, CUDA) RNG states as JSON-ready values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (also reads format-1 checkpoints)."""
    py = state["python"]
    if isinstance(py, str):  # format 1: repr of the tuple
        random.setstate(ast.literal_eval(py))
    else:
        random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def dataset_state(dataset) -> dict | None:
    """``dataset.state_dict()`` when the data set has one (torchdata's ``Stateful`` protocol)."""
    fn = getattr(dataset, "state_dict", None)
    return fn() if callable(fn) else None


def process_states(dataset=None) -> list[dict]:
    """``[{"rng": ..., "dataset": ...}]`` of every process (gathered under torch.distributed;
    every process must call it), in rank order."""
    local = {"rng": rng_state(), "dataset": dataset_state(dataset)}
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        out: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(out, local)
        return out
    return [local]


def restore_process_state(state: dict, rank: int = 0, dataset=None) -> bool:
    """Restore process ``rank``'s RNG (and data-set) state from a loaded ``state``; False when
    the checkpoint was written by fewer processes (the resumed run is then not exact)."""
    ranks = state.get("processes")
    if ranks is None:  # format 1
        if "rng" in state:
            set_rng_state(state["rng"])
        return rank == 0
    if rank >= len(ranks):
        return False
    set_rng_state(ranks[rank]["rng"])
    load = getattr(dataset, "load_state_dict", None)
    if callable(load) and ranks[rank].get("dataset") is not None:
        load(ranks[rank]["dataset"])
    return True


# ----------------------------------------------------------------------------- data position


class ShuffledBatches(torch.utils.data.Sampler):
    """Shuffled whole batches whose order is a pure function of ``(seed, epoch)``.

    Epoch ``e`` shuffles the indices with ``torch.randperm(n)`` from a generator seeded with
    ``seed + e`` (as ``DistributedSampler`` does) and cuts whole batches (the incomplete last one
    is dropped); process ``rank`` of ``world`` takes batches ``rank, rank + world, ...``. So the
    position in the stream is the number of batches taken: ``skip`` batches of the current epoch
    are passed over (without loading anything) by the next iteration, which is how training
    resumes mid-epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch = 0
        self.skip = 0

    def __len__(self) -> int:
        return (self.n // self.batch_size) // self.world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g)
        skip, self.skip = self.skip, 0
        bs = self.batch_size
        for b in range(skip, len(self)):
            j = b * self.world + self.rank
            yield order[j * bs : (j + 1) * bs].tolist()


# ----------------------------------------------------------------------------- writing


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / "state.json").read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{folder}: not a tgsr checkpoint (state.json is missing)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(
            f"{folder}: corrupt checkpoint (state.json: {type(exc).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") not in READABLE_VERSIONS:
        version = state.get("format_version") if isinstance(state, dict) else None
        raise ModelFormatError(f"{folder}: unsupported checkpoint format_version {version}")
    return state


def _step_of(folder: Path) -> int:
    try:
        return int(json.loads((folder / "state.json").read_text()).get("step", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        m = STEP_DIR.match(folder.name)
        return int(m.group(1)) if m else -1


def save_checkpoint(
    folder: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict,
    state: dict,
    *,
    keep: int = 1,
    processes: list[dict] | None = None,
) -> Path:
    """Write the checkpoint ``folder`` (e.g. ``checkpoints/last``) crash-safely; the previous
    one becomes ``step_<step>/`` beside it and only the newest ``keep`` are kept.

    ``optimizers`` maps names to anything with ``state_dict()`` (optimizers, LR schedulers,
    grad scalers); ``state`` must be JSON-serialisable (step, elapsed ...); ``processes`` is
    :func:`process_states` (default: this process's RNG state only). A failed write (full disk,
    ...) removes its temporary folder and raises :class:`TGSRError`; the previous checkpoint
    stays as it was.
    """
    folder = Path(folder)
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{TMP_PREFIX}*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f"{TMP_PREFIX}{folder.name}-{os.getpid()}"
    try:
        tmp.mkdir()
        tensors = {}
        for name, module in modules.items():
            for key, value in module.state_dict().items():
                tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
        save_file(tensors, str(tmp / "models.safetensors"))
        torch.save({k: o.state_dict() for k, o in optimizers.items()}, tmp / "optimizers.pt")
        files = {}
        for name in FILES:
            _fsync(tmp / name)
            files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": _digest(tmp / name)}
        payload = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            **state,
            "processes": processes if processes is not None else process_states(),
            "files": files,
        }
        with open(tmp / "state.json", "w") as f:
            f.write(json.dumps(payload))
            f.flush()
            os.fsync(f.fileno())
        _fsync(tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):  # safetensors wraps I/O errors
            reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())
            previous = f"; the previous checkpoint {folder} is intact" if folder.exists() else ""
            raise TGSRError(f"writing checkpoint {folder} failed: {reason}{previous}") from None
        raise
    # rotate: last/ -> step_<its step>/ (or away when it holds the same step), new -> last/
    if folder.exists():
        old_step = _step_of(folder)
        if old_step >= 0 and old_step != state.get("step"):
            dst = root / f"step_{old_step:08d}"
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(folder, dst)
        else:
            trash = root / f"{TMP_PREFIX}old-{os.getpid()}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        _fsync(root)
    os.replace(tmp, folder)
    _fsync(root)
    older = sorted(
        (p for p in root.iterdir() if STEP_DIR.match(p.name)), key=_step_of, reverse=True
    )
    for p in older[max(keep, 1) - 1 :]:
        shutil.rmtree(p, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------- reading


def verify_checkpoint(folder: str | Path) -> dict:
    """``state.json`` of a complete, undamaged checkpoint, else one-line :class:`ModelFormatError`
    (missing file, truncated or altered file, unreadable state)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: no such checkpoint folder")
    state = _read_state(folder)
    if not (folder / "models.safetensors").is_file():
        raise ModelFormatError(f"{folder}: not a tgsr checkpoint (models.safetensors is missing)")
    for name, want in state.get("files", {}).items():
        path = folder / name
        try:
            size = path.stat().st_size
            digest = _digest(path) if size == want["bytes"] else None
        except OSError:  # missing, or removed while we read it
            raise ModelFormatError(f"{folder}: incomplete checkpoint ({name} is missing)") from None
        if size != want["bytes"]:
            raise ModelFormatError(
                f"{folder}: truncated checkpoint ({name} has {size} bytes, {want['bytes']} written)"
            )
        if digest != want["sha256"]:
            raise ModelFormatError(f"{folder}: corrupt checkpoint ({name} fails its SHA-256 check)")
    return state


def checkpoint_candidates(root: str | Path) -> list[Path]:
    """``last/`` and the ``step_*/`` folders under ``root``, newest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and (p.name == "last" or STEP_DIR.match(p.name))
    ]

    def newest_first(p: Path):
        step = _step_of(p)
        if p.name == "last" and step < 0:  # unreadable state: it was the newest
            step = float("inf")
        return (step, p.name == "last")

    return sorted(found, key=newest_first, reverse=True)


def latest_checkpoint(
    root: str | Path, warn: Callable[[str], None] | None = None
) -> tuple[Path, dict] | None:
    """The newest checkpoint under ``root`` that verifies, with its state; damaged ones are
    reported through ``warn`` (one line each) and skipped. ``None`` when there is none."""
    for folder in checkpoint_candidates(root):
        try:
            return folder, verify_checkpoint(folder)
        except ModelFormatError as exc:
            if warn is not None:
                warn(f"skipping a damaged checkpoint: {exc}")
    return None


def load_checkpoint(
    folder: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict | None = None,
    restore_rng: bool = True,
    rank: int = 0,
) -> dict:
    """Verify ``folder``, load weights (strict) and optimizer states into the given objects and
    (``restore_rng``) process ``rank``'s RNG states; returns the ``state``."""
    folder = Path(folder)
    state = verify_checkpoint(folder)
    try:
        tensors = load_file(str(folder / "models.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:  # format 1 has no checksums
        raise ModelFormatError(
            f"{folder}: corrupt checkpoint (models.safetensors: {' '.join(str(exc).split())})"
        ) from None
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
        try:
            opt_states = torch.load(opt_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a pickle error of any kind: one line
            raise ModelFormatError(
                f"{folder}: corrupt checkpoint (optimizers.pt: {type(exc).__name__})"
            ) from None
        for name, opt in optimizers.items():
            if name in opt_states:
                opt.load_state_dict(opt_states[name])
    if restore_rng:
        restore_process_state(state, rank)
    return state


class Stopwatch:
    """Wall-clock budget that survives resumes (``elapsed`` is restored from the checkpoint)."""

    def __init__(self, elapsed: float = 0.0):
        self.start = time.monotonic() - elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


class RunCheckpoints:
    """A training run's checkpoint writer, shared by TGSR and DAMSM training: at most one write
    per step (``save`` at the end after a periodic save at the same step does nothing); every
    process gathers its RNG and data-set state, the main process writes (atomically, keeping
    ``keep`` checkpoints)."""

    def __init__(self, folder: Path, modules: dict, optimizers: dict, loader, *, keep: int,
                 main: bool, saved_step: int = -1):  # fmt: skip
        self.folder, self.modules, self.optimizers, self.loader = (
            folder,
            modules,
            optimizers,
            loader,
        )
        self.keep, self.main, self.saved_step = keep, main, saved_step

    def save(self, step: int, elapsed: float, history) -> None:
        if step == self.saved_step:
            return
        self.saved_step = step
        processes = process_states(self.loader.dataset)  # every process: RNG and data-set state
        if self.main:
            state = {"step": step, "elapsed": elapsed, "history": history,
                     "batches_per_epoch": len(self.loader)}  # fmt: skip
            save_checkpoint(self.folder, self.modules, self.optimizers, state, keep=self.keep,
                            processes=processes)  # fmt: skip
