"""`tgsr data ...` and `tgsr fetch niqe` commands (placeholders until the data layer lands)."""

from __future__ import annotations

from tgsr.errors import TGSRError


def check() -> None:
    """Validate a data set."""
    raise TGSRError("`tgsr data check` is not implemented yet")


def degrade() -> None:
    """Write LR images."""
    raise TGSRError("`tgsr data degrade` is not implemented yet")
