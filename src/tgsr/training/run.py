"""The scaffold every training run shares: TGSR's :func:`~tgsr.training.trainer.fit` and the
DAMSM's :func:`~tgsr.training.damsm.train_damsm` differ only in what one step does.

    run = Run(out_dir, cfg.train, cfg.data, title=...)   # checks, accelerator, seeds
    ...                                                  # data, networks, optimizers (prepared)
    run.restore(modules, optimizers, loader)             # run folder; --resume: newest checkpoint
    if run.nothing_to_train: return                      # resumed at or past max_steps
    run.save_config(cfg)                                 # config.yaml (+ the replaced one kept)
    with run.loop(loader) as batches:                    # progress bar; SIGTERM/SIGINT -> clean stop
        for batch in batches:                            # until max_steps, max_minutes or a signal
            ...                                          # one training step
            dt = run.advance()                           # run.step += 1
            ...                                          # log to run.log
            run.end_step(dt, values)                     # progress bar, periodic checkpoint
    run.checkpoint()                                     # the final one
    run.write_summary()                                  # train_summary.json (main process)
    console.print(run.finish_line(...))                  # how it ended (a signal: how to go on)
    run.close()

Exact resume (docs/reliability.md): :meth:`Run.restore` loads the weights and optimizer states
before the loop; :meth:`Run.loop` restarts the data stream at the step reached and restores the
RNG and data-set states as the last thing before the first batch is drawn.

Safety (docs/reliability.md): an output folder that already holds a run is refused unless the run
is resumed or ``overwrite`` is given (which removes that run's files once every check passed); the
folder is created only once data and networks are built; a resume with a changed config prints
the changed keys and keeps the replaced ``config.yaml`` as ``config.resume-<step>.yaml``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import yaml
from safetensors import safe_open

from tgsr.config import ConfigError, config_to_dict, load_config, save_config
from tgsr.errors import ModelFormatError, TGSRError
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
    clear_run,
    console,
    format_losses,
    infinite,
    make_progress,
    preflight,
    progress_line,
    start_run,
)

# Config keys that decide the networks' shapes: named when a checkpoint does not fit.
ARCHITECTURE_KEYS = ("generator.", "discriminator.", "damsm.text_encoder.", "damsm.image_encoder.",
                     "data.scale", "data.hr_size", "train.text_encoder", "train.scratch_embedding_dim",
                     "train.ema_decay", "loss.cgan", "damsm.path")  # fmt: skip
MAX_LISTED = 20  # skipped data entries kept in the summary


def _say(line: str) -> None:
    """One plain line on stderr, never wrapped or cut (log files, narrow terminals)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(old_path: Path, cfg) -> list[str]:
    """``key old -> new`` for every config key that differs between the run's saved config
    (``old_path``) and ``cfg``; [] when the file is missing or unreadable."""
    try:
        old = config_to_dict(load_config(old_path))
    except ConfigError:  # an older or hand-edited file: compare what it says
        try:
            old = yaml.safe_load(old_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return []
    except OSError:
        return []
    if not isinstance(old, dict):
        return []
    old.pop("format_version", None)
    a, b = _flat(old), _flat(config_to_dict(cfg))
    missing = "(unset)"
    return [f"{k} {a.get(k, missing)} -> {b.get(k, missing)}"
            for k in sorted(a.keys() | b.keys()) if a.get(k, missing) != b.get(k, missing)]  # fmt: skip


class Run:
    """One training run: its folder, accelerator, step counter, loss log, time budget,
    checkpoints, progress bar and stop signal.

    ``settings`` is ``cfg.train`` or ``cfg.damsm_train`` (``seed``, ``mixed_precision``,
    ``batch_size``, ``max_steps``, ``max_minutes``, ``checkpoint_every``, ``keep_checkpoints``);
    ``show`` names the logged values the progress bar shows."""

    def __init__(self, out_dir: str | Path, settings, data_cfg, *, title: str,
                 resume: bool = False, progress: bool = True, cpu: bool | None = None,
                 threads: int | None = None, need_damsm: bool = False, damsm_path=None,
                 show: tuple[str, ...] = (), overwrite: bool = False, config=None,
                 section: str = "train", resume_command: str | None = None):  # fmt: skip
        preflight(out_dir, resume, data_cfg, need_damsm, damsm_path, overwrite)
        self.dir, self.accelerator = start_run(
            out_dir, settings.mixed_precision, settings.seed, threads, cpu
        )
        self.settings, self.title, self.resume, self.show = settings, title, resume, show
        self.overwrite, self.section, self.resume_command = overwrite, section, resume_command
        self.main = self.accelerator.is_main_process
        self.device = self.accelerator.device
        self.progress = progress and self.main
        self.plain = self.progress and not console.is_terminal  # logs, pipes: plain lines
        self.budget = settings.max_minutes * 60 if settings.max_minutes else math.inf
        self.step = 0
        self.state: dict | None = None  # the checkpoint resumed from
        self.stop = StopSignal()
        self.nothing_to_train = False  # resumed at or past max_steps
        self.warnings: list[str] = []  # also in train_summary.json
        self.dataset = None
        self.changes: list[str] = []  # config keys changed since the run (resume)
        if resume and config is not None:
            self.changes = config_changes(self.dir / "config.yaml", config)

    # ---- before the loop ------------------------------------------------------------------
    def restore(
        self, modules: dict, optimizers: dict, loader, vocab_size: int | None = None
    ) -> None:
        """Create the run folder (with ``overwrite``, after removing the previous run's files)
        and set up the loss log, stopwatch and checkpoint writer of ``modules`` (name -> network,
        wrapped or not) and ``optimizers`` (name -> optimizer / scheduler; the grad scaler is
        added); with ``resume``, first load the newest checkpoint that verifies into them (a
        run already at ``max_steps`` sets :attr:`nothing_to_train` and returns). ``vocab_size``:
        the text encoder's vocabulary, built from the data (DAMSM), named if it no longer fits."""
        modules = {k: self.accelerator.unwrap_model(m) for k, m in modules.items()}
        stateful = dict(optimizers)
        if self.accelerator.scaler is not None:
            stateful["grad_scaler"] = self.accelerator.scaler
        root = self.dir / "checkpoints"
        elapsed = 0.0
        self.dataset = loader.dataset
        if self.main:
            if self.overwrite:
                removed = clear_run(self.dir)
                if removed:
                    _say(f"replacing the previous run in {self.dir}: removed {', '.join(removed)}")
            self.dir.mkdir(parents=True, exist_ok=True)
            self._report_skipped()
        self.accelerator.wait_for_everyone()
        if self.resume:
            found = latest_checkpoint(root, warn=console.print if self.main else None)
            if found is None:
                raise TGSRError(f"--resume: no usable checkpoint in {root}")
            try:
                self.state = load_checkpoint(found[0], modules, stateful, restore_rng=False)
            except ModelFormatError as exc:
                raise self._mismatch(found[0], exc, vocab_size) from None
            self.step, elapsed = self.state["step"], self.state["elapsed"]
            if self.changes and self.main:
                _say(f"resume: config differs from the run's: {', '.join(self.changes)}")
            if self.step >= self.settings.max_steps:
                self.nothing_to_train = True
                self.log, self.watch = ScalarLog(None), Stopwatch(elapsed)
                self.log.history = {k: [tuple(p) for p in v]
                                    for k, v in self.state.get("history", {}).items()}  # fmt: skip
                if self.main:
                    left = ("the run is left as it is" if self.final_save_complete else
                            "its final save is incomplete: writing it again")  # fmt: skip
                    _say(
                        f"{self.title}: already at step {self.step} >= {self.section}.max_steps "
                        f"{self.settings.max_steps}: nothing to train ({left}; "
                        f"raise {self.section}.max_steps to train on)"
                    )
                return
            if self.main:
                _say(
                    f"{self.title}: resumed from {found[0]} at step {self.step} "
                    f"({elapsed / 60:.1f} min already trained)"
                )
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

    def _report_skipped(self) -> None:
        skipped = getattr(self.dataset, "skipped", None) or []
        if skipped:
            _say(f"skipped {len(skipped)} bad data entries (first: {skipped[0]})")

    def _mismatch(self, folder: Path, exc: ModelFormatError, vocab_size: int | None) -> TGSRError:
        """The error for a checkpoint whose networks do not fit the config: the config keys that
        changed (or the rebuilt vocabulary) rather than only a state-dict size mismatch."""
        if vocab_size is not None:
            with contextlib.suppress(Exception):
                with safe_open(str(folder / "models.safetensors"), "pt") as f:
                    rows = f.get_slice("text_encoder.embedding.weight").get_shape()[0]
                if rows != vocab_size:
                    data = [c for c in self.changes if c.startswith("data.")]
                    why = f" ({', '.join(data)})" if data else ""
                    return TGSRError(
                        f"--resume: the vocabulary is rebuilt from the training captions and now "
                        f"has {vocab_size} words, the run's {rows}: the data differs from the "
                        f"run's{why}; resume with the same data or train into a new --out"
                    )
        arch = [c for c in self.changes if c.startswith(ARCHITECTURE_KEYS)]
        if arch:
            return TGSRError(
                f"--resume: the config builds other networks than the run's checkpoint "
                f"({', '.join(arch)}); resume with the run's config ({self.dir / 'config.yaml'}) "
                "or train into a new --out"
            )
        return exc

    def save_config(self, cfg) -> None:
        """``config.yaml``: the config in use; on a resume with a changed config the replaced
        one is kept as ``config.resume-<step>.yaml`` (the config of the steps up to <step>)."""
        if not self.main:
            return
        path = self.dir / "config.yaml"
        if self.state is not None and self.changes and path.is_file():
            kept, n = self.dir / f"config.resume-{self.step}.yaml", 1
            while kept.exists():  # resumed twice from the same step: keep both
                n += 1
                kept = self.dir / f"config.resume-{self.step}.{n}.yaml"
            path.replace(kept)
        save_config(cfg, path)

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
        with self.stop, make_progress(disable=not self.progress or self.plain) as self._bar:
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
        """The progress bar (with ``values``, the last logged ones) on a terminal, else a plain
        line every ``log_every`` steps (and after the first); then the periodic checkpoint (after
        the step's log, whose history it holds)."""
        s = self.settings
        total = bar_total(self.step, s.max_steps, self.watch.elapsed, self.budget, dt)
        info = f"{dt * 1000:.0f} ms/step {format_losses(values, list(self.show))}".strip()
        self._bar.update(self._task, completed=self.step, total=total, info=info)
        if self.plain and (self.step % s.log_every == 0 or self.step == 1):
            left = (total - self.step) * dt
            _say(progress_line(self.title, self.step, total, self.watch.elapsed, left, info))
        if s.checkpoint_every and self.step % s.checkpoint_every == 0:
            self.checkpoint()

    # ---- after the loop -------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Write a checkpoint of the current step (every process must call it; once per step)."""
        self.checkpoints.save(self.step, self.watch.elapsed, self.log.history)

    @property
    def stopped_by(self) -> str:
        if self.step >= self.settings.max_steps:  # a signal during the last step: finished
            return "max_steps"
        return "signal" if self.stop.requested else "max_minutes"

    @property
    def final_save_complete(self) -> bool:
        """Whether the run's last session saved its model and summary at the checkpoint's step
        (``train_summary.json`` is written last, after the model). A kill between the final
        checkpoint and those writes leaves it stale or missing; a resume then writes them."""
        try:
            summary = json.loads((self.dir / "train_summary.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(summary, dict) and summary.get("steps") == self.step

    def write_summary(self, **extra) -> None:
        """``train_summary.json``: steps, minutes, why training stopped, images seen, skipped
        data entries, warnings, the loss history, and ``extra`` (main process only)."""
        if not self.main:
            return
        skipped = list(getattr(self.dataset, "skipped", None) or [])
        summary = {
            "steps": self.step,
            "max_steps": self.settings.max_steps,
            "minutes": self.watch.elapsed / 60,
            "stopped_by": self.stopped_by,
            "images_seen": self.step * self.settings.batch_size * self.accelerator.num_processes,
            "skipped_data": {"count": len(skipped), "first": skipped[:MAX_LISTED]},
            "warnings": self.warnings,
            **extra,
            "history": self.log.history,
        }
        (self.dir / "train_summary.json").write_text(json.dumps(summary))

    def finish_line(self, normal: str, saved: str) -> str:
        """The last line: ``normal`` after a normal end; after a signal, that training was
        stopped, ``saved`` (what was written, where) and how to continue (``resume_command``;
        without one, e.g. inside the quickstart, which does not resume: where the checkpoint is)."""
        if self.stopped_by != "signal":
            return normal
        how = (f"continue with: {self.resume_command}" if self.resume_command
               else f"its checkpoint is in {self.dir / 'checkpoints'}")  # fmt: skip
        return (f"{self.title}: stopped by a signal at step {self.step} of "
                f"{self.settings.max_steps} ({self.watch.elapsed / 60:.1f} min); {saved}; {how}")  # fmt: skip

    def close(self) -> None:
        self.log.close()
