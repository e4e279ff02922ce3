"""Run ``tgsr ARGS`` in-process through the real entry point (one-line errors, exit codes)."""

from __future__ import annotations

import sys

from tgsr.cli.app import main


def run_tgsr(monkeypatch, capsys, *args, cwd=None) -> tuple[int, str, str]:
    """-> (exit code, stdout, stderr) of ``tgsr ARGS`` (run in ``cwd`` when given)."""
    if cwd is not None:
        monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["tgsr", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err
