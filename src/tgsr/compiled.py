"""``torch.compile`` for inference, with a fallback to eager (``TGSRPipeline.from_pretrained(dir,
compile=True)``, ``tgsr upscale --compile``).

Shapes are static (``dynamic=False``): tiled inference calls the generator on tiles of one size,
so one graph specialised to that size serves every full batch of tiles (one more for a smaller
last batch); an untiled input of a new size compiles once more (torch keeps up to
``torch._dynamo.config.cache_size_limit`` versions, then runs that call eagerly).

Compilation happens at the first call. When ``torch.compile`` is unavailable on this platform or
fails (no C++ compiler for the CPU backend, an unsupported Python, an operator the compiler cannot
handle), a one-line :class:`~tgsr.errors.CompileError` is logged as a warning and the module runs
eagerly from then on: the output is that of ``compile=False``, never a crash.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from tgsr.errors import CompileError

log = logging.getLogger(__name__)

__all__ = ["CompiledForward"]


class CompiledForward:
    """Calls ``torch.compile(module, dynamic=dynamic)``; on a compile failure, ``module``.

    ``error`` holds the :class:`CompileError` once compilation failed (None while it works);
    ``active`` says whether calls still go through the compiled module."""

    def __init__(self, module: nn.Module, dynamic: bool | None = False):
        self.module = module
        self.dynamic = dynamic
        self.error: CompileError | None = None
        self._compiled = None
        try:
            self._compiled = torch.compile(module, dynamic=dynamic)
        except Exception as exc:  # e.g. torch.compile not supported on this Python
            self._give_up(exc)

    @property
    def active(self) -> bool:
        return self._compiled is not None

    def _give_up(self, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        self.error = CompileError(
            f"torch.compile is unavailable or failed on this platform "
            f"({type(exc).__name__}: {first}); running the generator eagerly (not compiled)"
        )
        log.warning("%s", self.error)
        self._compiled = None

    def __call__(self, *args, **kwargs):
        if self._compiled is not None:
            _quiet_cpp_extension_log()
            try:
                return self._compiled(*args, **kwargs)
            except Exception as exc:
                # an error of the call itself (bad input) is raised again by the eager run,
                # and compilation stays on; only a failure that eager does not share disables it
                out = self.module(*args, **kwargs)
                self._give_up(exc)
                return out
        return self.module(*args, **kwargs)


def _quiet_cpp_extension_log() -> None:
    """The first compile imports ``torch.utils.cpp_extension``, which logs "No CUDA runtime is
    found, using CUDA_HOME=..." on any machine with a CUDA folder and no GPU: noise on a CPU
    run. Raised to ERROR unless the user set that logger's level."""
    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    if cpp_log.level == logging.NOTSET:
        cpp_log.setLevel(logging.ERROR)
