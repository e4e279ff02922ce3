"""`tgsr data synth` (placeholder)."""

from tgsr.errors import TGSRError


def synth() -> None:
    """Generate the controlled benchmark."""
    raise TGSRError("`tgsr data synth` is not implemented yet")
