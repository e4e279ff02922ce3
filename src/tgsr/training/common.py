"""Pieces shared by the DAMSM pre-training and the TGSR training loops."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import signal
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text
from torch.utils.data import DataLoader

from tgsr.data.loader import build_dataset
from tgsr.device import effective_mixed_precision, effective_num_workers
from tgsr.errors import TGSRError
from tgsr.training.checkpoint import ShuffledBatches, checkpoint_candidates, latest_checkpoint

console = Console(stderr=True)


def make_accelerator(mixed_precision: str = "no", cpu: bool | None = None):
    """An ``accelerate.Accelerator``; CPU when no GPU is present (or ``cpu=True``)."""
    if cpu is None:
        cpu = not torch.cuda.is_available()
    # Several trainings in one process (the quickstart) may use different precisions:
    # the accelerator state is a process-wide singleton, reset all but the process group.
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


def train_loader(data_cfg, vocab, batch_size: int, batch_key: str, seed: int = 0):
    """The shuffled training DataLoader of ``data_cfg`` (whole batches only), or a clear error
    when the data set is smaller than one batch (``batch_key`` names the setting to lower).

    Its order is a pure function of ``(seed, epoch)`` and, under torch.distributed, each process
    takes its own share of the batches (:class:`~tgsr.training.checkpoint.ShuffledBatches`), so
    :func:`infinite` can resume it at any step. It has its own ``torch.Generator``: iterating it
    never draws from the global RNG."""
    dataset = build_dataset(data_cfg, vocab, train=True)
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler = ShuffledBatches(len(dataset), batch_size, seed, rank, world)
    workers = effective_num_workers(data_cfg.num_workers)  # 0 where torch fills the CPU's cores
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    if len(loader) == 0:
        raise TGSRError(
            f"the training set has {len(dataset)} images, fewer than {batch_key}={batch_size}"
            + (f" x {world} processes" if world > 1 else "")
            + ": lower the batch size or add data"
        )
    return loader


# What marks a folder as holding a training run (TGSR or DAMSM): any of these entries.
RUN_MARKERS = ("config.yaml", "train_summary.json", "checkpoints", "generator", "text_encoder",
               "image_encoder")  # fmt: skip
# What ``--overwrite`` removes: every entry a TGSR or DAMSM run writes (nothing else).
RUN_ENTRIES = (*RUN_MARKERS, "config.json", "vocab.json", "damsm", "samples", "tb")


def existing_run(out_dir) -> list[str]:
    """The entries of ``out_dir`` that mark it as holding a run (empty: no run there)."""
    out = Path(out_dir)
    return [name for name in RUN_MARKERS if (out / name).exists()] if out.is_dir() else []


def clear_run(out_dir) -> list[str]:
    """Remove a previous run's files from ``out_dir`` (``--overwrite``): the entries a run
    writes (:data:`RUN_ENTRIES`, ``config.resume-*.yaml``); anything else is left. -> the names
    removed."""
    out = Path(out_dir)
    if not existing_run(out):  # no run here: nothing of a folder's own is touched
        return []
    names = [n for n in RUN_ENTRIES if (out / n).exists() or (out / n).is_symlink()]
    names += sorted(p.name for p in out.glob("config.resume-*.yaml"))
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return names


def _under_run_entries(path: Path, out: Path) -> bool:
    """Whether ``path`` (symlinks resolved) is ``out`` itself or lies in an entry of ``out``
    that ``--overwrite`` removes."""
    path, out = path.expanduser().resolve(), out.expanduser().resolve()
    if path == out:
        return True
    for name in RUN_ENTRIES:
        entry = out / name
        if path == entry or path.is_relative_to(entry) or path.is_relative_to(entry.resolve()):
            return True
    return False


def preflight(out_dir, resume: bool, data_cfg, need_damsm: bool = False, damsm_path=None,
              overwrite: bool = False) -> None:  # fmt: skip
    """The checks that need no loading, made before anything is created or read: the output
    folder (a run already there needs ``resume`` or ``overwrite``), a DAMSM where the config
    needs one, the data set folder, a checkpoint to resume from."""
    out = Path(out_dir)
    if resume and overwrite:
        raise TGSRError("--resume and --overwrite contradict each other: give one")
    if out.exists() and not out.is_dir():
        raise TGSRError(f"--out {out}: is a file, not a folder")
    found = existing_run(out)
    if found and not resume and not overwrite:
        raise TGSRError(
            f"--out {out} already holds a run ({', '.join(found)}): continue it with --resume, "
            "replace it with --overwrite, or choose another --out"
        )
    if need_damsm and not damsm_path:
        raise TGSRError(
            "this config uses text: pre-train a DAMSM first (`tgsr damsm train --config ...`) "
            "and pass it with --set damsm.path=DIR"
        )
    if damsm_path and not Path(damsm_path).expanduser().is_dir():
        raise TGSRError(f"damsm.path={damsm_path}: no such DAMSM folder")
    if data_cfg.format != "synthetic" and not Path(data_cfg.root).expanduser().exists():
        raise TGSRError(f"data.root={data_cfg.root}: data set not found")
    if overwrite and existing_run(out):
        for key, used in (("damsm.path", damsm_path), ("data.root", data_cfg.root)):
            if used and _under_run_entries(Path(used), out):
                raise TGSRError(f"{key}={used} is part of the run in {out} that --overwrite "
                                "would remove: copy it elsewhere first")  # fmt: skip
    root = out / "checkpoints"
    if resume and not checkpoint_candidates(root):
        raise TGSRError(f"--resume: no checkpoint in {root}")
    if resume and latest_checkpoint(root) is None:
        raise TGSRError(f"--resume: no usable checkpoint in {root} (every one is damaged)")


def start_run(out_dir, mixed_precision: str, seed: int, threads: int | None, cpu: bool | None):
    """Set up the accelerator, torch threads and seeds of one training run; -> (out_dir as Path,
    accelerator). The folder itself is created later, once data and networks are built
    (:meth:`tgsr.training.run.Run.restore`), so a run that fails before leaves no folder."""
    out_dir = Path(out_dir)
    effective = effective_mixed_precision(mixed_precision, cpu)
    if effective != mixed_precision:
        console.print(
            "note: this CPU has no fast bf16 kernels (AMX / AVX-512-BF16): training in "
            "float32 instead of bf16 autocast"
        )
    accelerator = make_accelerator(effective, cpu)
    set_threads(threads)
    set_seed(seed, device_specific=False)
    return out_dir, accelerator


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


class _InfoColumn(ProgressColumn):
    """The free-text field (losses): the first column to give way on a narrow terminal, cut
    with an ellipsis on one line."""

    def __init__(self):
        super().__init__(table_column=Column(no_wrap=False, min_width=0))

    def render(self, task) -> Text:
        return Text(str(task.fields.get("info", "")), no_wrap=True, overflow="ellipsis")


def make_progress(disable: bool = False) -> Progress:
    """A rich progress bar with ETA, step time and a free-text field for the losses. On a narrow
    terminal the free text is cut first, then the bar shrinks; name, count, times and ETA stay."""

    def fixed() -> Column:
        return Column(no_wrap=True)

    return Progress(
        TextColumn("[bold]{task.description}", table_column=fixed()),
        BarColumn(table_column=Column(no_wrap=False)),
        MofNCompleteColumn(table_column=fixed()),
        TimeElapsedColumn(table_column=fixed()),
        TextColumn("ETA", table_column=fixed()),
        TimeRemainingColumn(table_column=fixed()),
        _InfoColumn(),
        console=console,
        disable=disable,
        transient=False,
    )


def duration(seconds: float) -> str:
    """``h:mm:ss`` (as the progress bar writes times)."""
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def progress_line(title: str, step: int, total: int, elapsed: float, left: float | None,
                  info: str = "") -> str:  # fmt: skip
    """The plain progress line printed instead of the bar when the output is not a terminal
    (a log file, a pipe): ``title: step 40/200, 0:00:12 elapsed, ETA 0:00:48, <info>``."""
    eta = duration(left) if left is not None else "-:--:--"
    line = f"{title}: step {step}/{total}, {duration(elapsed)} elapsed, ETA {eta}"
    return f"{line}, {info}" if info else line


class StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks, so it can checkpoint and exit cleanly.

    A second signal while stopping raises ``KeyboardInterrupt`` as usual.
    """

    def __init__(self):
        self.requested = False
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame):  # noqa: ARG002
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        console.print(f"[yellow]signal {signum}: writing a checkpoint, then stopping[/]")

    def __enter__(self) -> StopSignal:
        with contextlib.suppress(ValueError):  # not in the main thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class ScalarLog:
    """TensorBoard scalars (main process only) plus an in-memory copy for plots and reports."""

    def __init__(self, log_dir: Path | None, enabled: bool = True):
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.writer = None
        if log_dir is not None and enabled:
            try:  # tensorboard is optional (no logs without it) and slow to import
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional: keep the in-memory history only
                console.print("[yellow]tensorboard not installed: no TensorBoard logs[/]")
                return
            self.writer = SummaryWriter(str(log_dir))

    def add(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        for k, v in values.items():
            self.history.setdefault(prefix + k, []).append((step, float(v)))
            if self.writer is not None:
                self.writer.add_scalar(prefix + k, v, step)

    def image(self, tag: str, img_hwc_uint8, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, img_hwc_uint8, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def infinite(loader, start: int = 0):
    """Cycle a DataLoader forever from its ``start``-th batch (the number of batches already
    taken: training steps done), calling ``set_epoch`` on the sampler and the data set. With a
    :class:`~tgsr.training.checkpoint.ShuffledBatches` sampler the batches before ``start`` are
    skipped without being loaded; the loader's generator is re-seeded per epoch (worker seeds)."""
    per_epoch = len(loader)
    epoch, skip = divmod(start, per_epoch) if per_epoch else (0, 0)
    seed = getattr(loader.batch_sampler, "seed", None)
    while True:
        for obj in (loader.batch_sampler, getattr(loader, "sampler", None), loader.dataset):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        if seed is not None and loader.generator is not None:
            loader.generator.manual_seed(seed + epoch)
        if skip and hasattr(loader.batch_sampler, "skip"):
            loader.batch_sampler.skip = skip
        skip = 0
        yield from loader
        epoch += 1


def agreed(flag: bool, device=None) -> bool:
    """Rank 0's ``flag`` on every process (under torch.distributed), so that a time budget or a
    signal stops all processes at the same step; ``flag`` itself in a single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


def format_losses(values: dict[str, float], keys: list[str] | None = None) -> str:
    keys = keys or list(values)
    return " ".join(f"{k}={values[k]:.4f}" for k in keys if k in values)


class StepTimer:
    def __init__(self):
        self.last = time.perf_counter()
        self.avg = None

    def tick(self) -> float:
        now = time.perf_counter()
        dt, self.last = now - self.last, now
        self.avg = dt if self.avg is None else 0.9 * self.avg + 0.1 * dt
        return self.avg


def bar_total(step: int, max_steps: int, elapsed: float, budget: float, step_seconds: float) -> int:
    """The progress bar's total: ``max_steps``, or the step at which the time budget will stop
    training at the current pace (so the bar and its ETA are right under ``max_minutes``)."""
    if budget == float("inf") or step_seconds <= 0:
        return max_steps
    return min(max_steps, step + max(0, int((budget - elapsed) / step_seconds)))


def is_debug() -> bool:
    return bool(os.environ.get("TGSR_DEBUG"))
