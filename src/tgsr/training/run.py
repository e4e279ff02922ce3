"""The scaffold every training run shares: TGSR's :func:`~tgsr.training.trainer.fit` and the
DAMSM's :func:`~tgsr.training.damsm.train_damsm` differ only in what one step does.

    run = Run(out_dir, cfg.train, cfg.data, title=...)   # checks, run folder, accelerator, seeds
    ...                                                  # data, networks, optimizers (prepared)
    run.restore(modules, optimizers, loader)             # --resume: newest checkpoint that verifies
    with run.loop(loader) as batches:                    # progress bar; SIGTERM/SIGINT -> clean stop
        for batch in batches:                            # until max_steps, max_minutes or a signal
            ...                                          # one training step
            dt = run.advance()                           # run.step += 1
            ...                                          # log to run.log
            run.end_step(dt, values)                     # progress bar, periodic checkpoint
    run.checkpoint()                                     # the final one
    run.write_summary()                                  # train_summary.json (main process)
    run.close()

Exact resume (docs/reliability.md): :meth:`Run.restore` loads the weights and optimizer states
before the loop; :meth:`Run.loop` restarts the data stream at the step reached and restores the
RNG and data-set states as the last thing before the first batch is drawn.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

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
)


class Run:
    """One training run: its folder, accelerator, step counter, loss log, time budget,
    checkpoints, progress bar and stop signal.

    ``settings`` is ``cfg.train`` or ``cfg.damsm_train`` (``seed``, ``mixed_precision``,
    ``batch_size``, ``max_steps``, ``max_minutes``, ``checkpoint_every``, ``keep_checkpoints``);
    ``show`` names the logged values the progress bar shows."""

    def __init__(self, out_dir: str | Path, settings, data_cfg, *, title: str,
                 resume: bool = False, progress: bool = True, cpu: bool | None = None,
                 threads: int | None = None, need_damsm: bool = False, damsm_path=None,
                 show: tuple[str, ...] = ()):  # fmt: skip
        preflight(out_dir, resume, data_cfg, need_damsm, damsm_path)
        self.dir, self.accelerator = start_run(
            out_dir, settings.mixed_precision, settings.seed, threads, cpu
        )
        self.settings, self.title, self.resume, self.show = settings, title, resume, show
        self.main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.progress = progress and self.main
        self.budget = settings.max_minutes * 60 if settings.max_minutes else math.inf
        self.step = 0
        self.state: dict | None = None  # the checkpoint resumed from
        self.stop = StopSignal()

    # ---- before the loop ------------------------------------------------------------------
    def restore(self, modules: dict, optimizers: dict, loader) -> None:
        """Set up the loss log, stopwatch and checkpoint writer of ``modules`` (name -> network,
        wrapped or not) and ``optimizers`` (name -> optimizer / scheduler; the grad scaler is
        added); with ``resume``, first load the newest checkpoint that verifies into them."""
        modules = {k: self.accelerator.unwrap_model(m) for k, m in modules.items()}
        stateful = dict(optimizers)
        if self.accelerator.scaler is not None:
            stateful["grad_scaler"] = self.accelerator.scaler
        root = self.dir / "checkpoints"
        elapsed = 0.0
        if self.resume:
            found = latest_checkpoint(root, warn=console.print if self.main else None)
            if found is None:
                raise TGSRError(f"--resume: no usable checkpoint in {root}")
            self.state = load_checkpoint(found[0], modules, stateful, restore_rng=False)
            self.step, elapsed = self.state["step"], self.state["elapsed"]
            if self.main:
                console.print(f"{self.title}: resumed from {found[0]} at step {self.step} "
                              f"({elapsed / 60:.1f} min already trained)")  # fmt: skip
                if self.state.get("batches_per_epoch", len(loader)) != len(loader):
                    console.print("[yellow]the data set changed size: resume is not exact[/]")
        self.log = ScalarLog(self.dir / "tb", enabled=self.main)
        if self.state is not None:  # the loss curve so far, so train_summary.json holds all of it
            history = self.state.get("history", {})
            self.log.history = {k: [tuple(p) for p in v] for k, v in history.items()}
        self.watch = Stopwatch(elapsed)
        self.timer = StepTimer()
        self.checkpoints = RunCheckpoints(
            root / "last", modules, stateful, loader,
            keep=self.settings.keep_checkpoints, main=self.main,
            saved_step=self.step if self.state is not None else -1,
        )  # fmt: skip

    # ---- the loop -------------------------------------------------------------------------
    @contextlib.contextmanager
    def loop(self, loader) -> Iterator[Iterator[dict]]:
        """The training batches, from the step reached, until ``max_steps``, the time budget or
        a signal (rank 0 decides for all processes); a progress bar meanwhile."""
        batches = infinite(loader, start=self.step)
        if self.state is not None:  # last, so nothing between here and the loop draws from the RNGs
            exact = restore_process_state(self.state, self.accelerator.process_index,
                                          loader.dataset)  # fmt: skip
            if not exact and self.main:
                console.print(
                    "[yellow]more processes than the checkpoint had: resume is not exact[/]"
                )
        with self.stop, make_progress(disable=not self.progress) as self._bar:
            self._task = self._bar.add_task(self.title, total=self.settings.max_steps,
                                            completed=self.step, info="")  # fmt: skip
            yield self._batches(batches)

    def _batches(self, batches) -> Iterator[dict]:
        while self.step < self.settings.max_steps and agreed(
            self.watch.elapsed < self.budget and not self.stop.requested, self.device
        ):
            yield next(batches)

    def advance(self) -> float:
        """Count the step just made; -> the smoothed seconds per step."""
        self.step += 1
        return self.timer.tick()

    def end_step(self, dt: float, values: dict[str, float]) -> None:
        """The progress bar (with ``values``, the last logged ones), then the periodic checkpoint
        (after the step's log, whose history it holds)."""
        s = self.settings
        self._bar.update(self._task, completed=self.step,
                         total=bar_total(self.step, s.max_steps, self.watch.elapsed, self.budget, dt),
                         info=f"{dt * 1000:.0f} ms/step {format_losses(values, list(self.show))}")  # fmt: skip
        if s.checkpoint_every and self.step % s.checkpoint_every == 0:
            self.checkpoint()

    # ---- after the loop -------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write a checkpoint of the current step (every process must call it; once per step)."""
        self.checkpoints.save(self.step, self.watch.elapsed, self.log.history)

    @property
    def stopped_by(self) -> str:
        if self.stop.requested:
            return "signal"
        return "max_steps" if self.step >= self.settings.max_steps else "max_minutes"

    def write_summary(self) -> None:
        """``train_summary.json``: steps, minutes, why training stopped, images seen, the loss
        history (main process only)."""
        if not self.main:
            return
        (self.dir / "train_summary.json").write_text(json.dumps({
            "steps": self.step,
            "minutes": self.watch.elapsed / 60,
            "stopped_by": self.stopped_by,
            "images_seen": self.step * self.settings.batch_size * self.accelerator.num_processes,
            "history": self.log.history,
        }))  # fmt: skip

    def close(self) -> None:
        self.log.close()
