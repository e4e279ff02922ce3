"""Code shape (issue #10): no function in models/, losses/, training/ or cli/ is longer than
about 80 lines (signature included), so each one can be read on one screen (against the paper,
for the first three)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tgsr

SRC = Path(tgsr.__file__).parent
MAX_LINES = 80


def _long_functions(folder: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append(f"{path.relative_to(folder)}:{node.lineno} {node.name} ({n})")
    return found


@pytest.mark.parametrize("package", ["models", "losses", "training", "cli"])
def test_no_function_is_longer_than_80_lines(package):
    assert _long_functions(SRC / package, MAX_LINES) == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def f():\n{body}\n")
    assert _long_functions(tmp_path, MAX_LINES) == ["m.py:1 f (81)"]
    assert _long_functions(tmp_path, MAX_LINES + 1) == []
