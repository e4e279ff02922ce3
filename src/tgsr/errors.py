"""User-facing errors: the CLI prints them as one line (traceback only with TGSR_DEBUG=1)."""


class TGSRError(Exception):
    """A problem the user can fix (bad input, missing file, wrong model folder ...)."""


class BadInputError(TGSRError):
    """An input file (image, caption, manifest) that cannot be used; names the file."""


class ModelFormatError(TGSRError):
    """A model / checkpoint folder that is missing files or does not match the expected format."""


class Interrupted(TGSRError):
    """A command stopped by SIGINT (Ctrl-C) or SIGTERM after keeping what it had made: a
    training stage's checkpoint; for ``tgsr upscale``, every output written so far, each complete
    and listed in ``results.jsonl`` (both signals are held back while an output, its grid and
    its index line are written). The message says what was kept; the CLI prints it and exits
    with 130."""


class CompileError(TGSRError):
    """``torch.compile`` is unavailable or failed here; the pipeline logs it and runs eagerly."""
