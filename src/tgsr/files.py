"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

The temporary file is created with mode ``0o666`` and ``O_EXCL``, so the kernel applies the
process umask (and a folder's default ACL) as for any new file: a written file gets the same
permissions as one written with ``open()`` (``tempfile.mkstemp`` would make it ``0600``, and so
does safetensors' ``save_file``, which replaces the file it is given: the mode is set back).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "new_dir_beside"]


def _create_beside(path: Path) -> Path:
    """A new empty file next to ``path`` (hidden, unique name), permissions from the umask."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def new_dir_beside(path: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new empty folder next to ``path`` (hidden, unique name), permissions from the umask
    (``tempfile.mkdtemp`` would make it ``0700``)."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.{tag}")
        try:
            tmp.mkdir(0o777)
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[str], object]) -> Path:
    """Write ``data`` (text, bytes, or a function that writes the file at the path it is given)
    to ``path`` so that ``path`` is either the old file or the complete new one. -> ``path``."""
    path = Path(path)
    tmp = _create_beside(path)
    try:
        mode = tmp.stat().st_mode & 0o7777  # what the umask gave a new file
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(str(tmp))
            if tmp.stat().st_mode & 0o7777 != mode:  # a writer that made its own file (0600)
                os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
