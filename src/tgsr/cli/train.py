"""`tgsr damsm train`, `tgsr train`, `tgsr eval`, `tgsr quickstart`, `tgsr configs`."""

from __future__ import annotations

import typer

from tgsr.errors import TGSRError


def configs() -> None:
    """List the shipped config presets."""
    from tgsr.config import preset_names

    for name in preset_names():
        typer.echo(name)


def damsm_train() -> None:
    """Pre-train the DAMSM text/image encoders."""
    raise TGSRError("`tgsr damsm train` is not implemented yet")


def train() -> None:
    """Train TGSR."""
    raise TGSRError("`tgsr train` is not implemented yet")


def evaluate() -> None:
    """Evaluate a model."""
    raise TGSRError("`tgsr eval` is not implemented yet")


def quickstart() -> None:
    """Show text guidance working on a CPU in minutes."""
    raise TGSRError("`tgsr quickstart` is not implemented yet")
