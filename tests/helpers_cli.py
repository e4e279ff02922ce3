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


def one_error_line(err: str, code: int | None = None, alone: bool = False) -> str:
    """-> the one ``error: ...`` line on stderr of a command that stopped on a known error: no
    traceback, no "set TGSR_DEBUG" last-resort line, and when its exit ``code`` is given, 2.
    ``alone``: nothing else on stderr either (otherwise notes, warnings and skipped inputs may
    come before it)."""
    assert code is None or code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err and "TGSR_DEBUG" not in err, err
    assert not alone or lines == errors, err
    return errors[0]
