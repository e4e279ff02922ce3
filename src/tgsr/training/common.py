"""Pieces shared by the DAMSM pre-training and the TGSR training loops."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def make_accelerator(mixed_precision: str = "no", cpu: bool | None = None):
    """An ``accelerate.Accelerator``; CPU when no GPU is present (or ``cpu=True``)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if cpu is None:
        cpu = not torch.cuda.is_available()
    # Several trainings in one process (the quickstart) may use different precisions:
    # the accelerator state is a process-wide singleton, reset all but the process group.
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


def train_loader(data_cfg, vocab, batch_size: int, batch_key: str):
    """The shuffled training DataLoader of ``data_cfg`` (whole batches only), or a clear error
    when the data set is smaller than one batch (``batch_key`` names the setting to lower)."""
    from torch.utils.data import DataLoader

    from tgsr.data.loader import build_dataset
    from tgsr.errors import TGSRError

    dataset = build_dataset(data_cfg, vocab, train=True)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=data_cfg.num_workers,
        persistent_workers=data_cfg.num_workers > 0,
    )
    if len(loader) == 0:
        raise TGSRError(
            f"the training set has {len(dataset)} images, fewer than {batch_key}={batch_size}: "
            "lower the batch size or add data"
        )
    return loader


def start_run(out_dir, mixed_precision: str, seed: int, threads: int | None, cpu: bool | None):
    """Create ``out_dir`` and set up the accelerator, torch threads and seeds of one training
    run; -> (out_dir as Path, accelerator)."""
    from pathlib import Path

    from accelerate.utils import set_seed

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(mixed_precision, cpu)
    set_threads(threads)
    set_seed(seed, device_specific=False)
    return out_dir, accelerator


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def make_progress(disable: bool = False) -> Progress:
    """A rich progress bar with ETA, step time and a free-text field for the losses."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=disable,
        transient=False,
    )


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
            from torch.utils.tensorboard import SummaryWriter

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


def infinite(loader):
    """Cycle a DataLoader forever, calling ``set_epoch`` where the sampler has one."""
    epoch = 0
    while True:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        ds = getattr(loader, "dataset", None)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        yield from loader
        epoch += 1


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
