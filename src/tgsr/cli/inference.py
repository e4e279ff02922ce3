"""`tgsr upscale`, `tgsr export`, `tgsr demo` (placeholders until the inference layer lands)."""

from __future__ import annotations

from tgsr.errors import TGSRError


def upscale() -> None:
    """Upscale images with a caption."""
    raise TGSRError("`tgsr upscale` is not implemented yet")


def export() -> None:
    """Export a run as a pipeline folder."""
    raise TGSRError("`tgsr export` is not implemented yet")


def demo() -> None:
    """Start the web demo."""
    raise TGSRError("`tgsr demo` is not implemented yet")
