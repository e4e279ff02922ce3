"""`tgsr fetch niqe` (placeholder)."""

from tgsr.errors import TGSRError


def niqe() -> None:
    """Fetch NIQE pristine parameters."""
    raise TGSRError("`tgsr fetch niqe` is not implemented yet")
