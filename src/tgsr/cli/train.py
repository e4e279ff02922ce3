"""`tgsr damsm train`, `tgsr train`, `tgsr eval`, `tgsr quickstart`, `tgsr configs`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from tgsr.config import load_config, preset_names

# Commands import training, evaluation and the quickstart inside their bodies: they pull in
# torch (~3-4 s to import) and accelerate, which `tgsr --help` should not wait for.

ConfigOpt = Annotated[
    str, typer.Option("--config", "-c", help="Preset name (see `tgsr configs`) or YAML file.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set train.lr=2e-4 (repeatable)."),
]
CpuOpt = Annotated[bool, typer.Option("--cpu", help="Run on the CPU even when a GPU is present.")]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run in OUT from its newest valid checkpoint (a changed config is "
        "listed; the replaced config.yaml is kept as config.resume-STEP.yaml).",
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace the run already in OUT: its files (config, checkpoints, weights, logs, "
        "samples) are deleted once every check has passed. Without it (or --resume) an OUT "
        "holding a run is refused.",
    ),
]


def _resume_command(command: str, config: str, set_: list[str] | None, out: Path, cpu: bool) -> str:
    """The command that continues a run stopped by a signal (printed as its last line)."""
    parts = ["tgsr", *command.split(), "--config", config]
    for s in set_ or []:
        parts += ["--set", s]
    parts += ["--out", str(out), *(["--cpu"] if cpu else []), "--resume"]
    return shlex.join(parts)


def configs() -> None:
    """List the shipped config presets."""
    for name in preset_names():
        typer.echo(name)


def damsm_train(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="DAMSM folder to write.")],
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    cpu: CpuOpt = False,
) -> None:
    """Pre-train the DAMSM text/image encoders (word + sentence losses)."""
    from tgsr.training.damsm import train_damsm

    cfg = load_config(config, set_)
    again = _resume_command("damsm train", config, set_, out, cpu)
    train_damsm(cfg, out, resume=resume, cpu=cpu or None, overwrite=overwrite,
                resume_command=again)  # fmt: skip


def train(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path(
        "runs/tgsr"
    ),
    set_: SetOpt = None,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    cpu: CpuOpt = False,
) -> None:
    """Train TGSR (DAMSM frozen). Works under `accelerate launch` / `torchrun` too."""
    from tgsr.training.trainer import fit

    cfg = load_config(config, set_)
    again = _resume_command("train", config, set_, out, cpu)
    fit(cfg, out, resume=resume, cpu=cpu or None, overwrite=overwrite, resume_command=again)


def evaluate(
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            "-m",
            help="Training run folder (repeatable: name=DIR); not an exported pipeline.",
        ),
    ],
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Data config (default: the model's own).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Data folder (sets data.root).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("runs/eval"),
    eval_damsm: Annotated[
        Path | None, typer.Option("--eval-damsm", help="Independent DAMSM for TIM / R-precision.")
    ] = None,
    set_: SetOpt = None,
    bicubic: Annotated[
        bool, typer.Option("--bicubic/--no-bicubic", help="Also score bicubic upsampling.")
    ] = True,
) -> None:
    """Evaluate models: PSNR/SSIM, LR-consistency, TIM, R-precision, benchmark scores, report."""
    from tgsr.evaluation.evaluate import evaluate_cli

    evaluate_cli(model, config, data, out, eval_damsm, set_ or [], bicubic)


def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where everything goes.")] = Path(
        "tgsr_quickstart"
    ),
    minutes: Annotated[
        float | None,
        typer.Option(
            "--minutes",
            help="Total time budget (minutes). Default: 18 on a CPU with fast bf16 (AMX / "
            "AVX-512-BF16), 45 without (float32 training needs the time; docs/quickstart.md).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    set_: SetOpt = None,
) -> None:
    """No data or weights needed: train TGSR and a no-text baseline, compare, report.

    Generates the controlled benchmark, trains both models at x8, evaluates them against bicubic
    and writes a report with pictures (OUT/report/report.html)."""
    from tgsr.quickstart import run_quickstart

    run_quickstart(out, minutes=minutes, seed=seed, overrides=set_ or [])
