"""`tgsr damsm train`, `tgsr train`, `tgsr eval`, `tgsr quickstart`, `tgsr configs`."""

from __future__ import annotations

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


def configs() -> None:
    """List the shipped config presets."""
    for name in preset_names():
        typer.echo(name)


def damsm_train(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="DAMSM folder to write.")],
    set_: SetOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue from the newest valid checkpoint in OUT/checkpoints."
        ),
    ] = False,
    cpu: CpuOpt = False,
) -> None:
    """Pre-train the DAMSM text/image encoders (word + sentence losses)."""
    from tgsr.training.damsm import train_damsm

    cfg = load_config(config, set_)
    train_damsm(cfg, out, resume=resume, cpu=cpu or None)


def train(
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write.")] = Path(
        "runs/tgsr"
    ),
    set_: SetOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue from the newest valid checkpoint in OUT/checkpoints."
        ),
    ] = False,
    cpu: CpuOpt = False,
) -> None:
    """Train TGSR (DAMSM frozen). Works under `accelerate launch` / `torchrun` too."""
    from tgsr.training.trainer import fit

    cfg = load_config(config, set_)
    fit(cfg, out, resume=resume, cpu=cpu or None)


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
