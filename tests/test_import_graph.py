"""The package's import graph: no cycle, one low-pass, one table of data-set readers, a CLI that
starts without torch (issue #10, step 4)."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import tgsr
from tgsr.config import DataConfig

SRC = Path(tgsr.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """tgsr module -> the tgsr modules it imports, at the top or inside functions. An import of
    one's own parent package is left out: Python has always run it before the module itself."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in files and t != name and t not in ancestors}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = _import_graph()
    assert "tgsr.run_folder" in graph["tgsr.pipeline"]
    assert "tgsr.pipeline" in graph["tgsr.export"]
    assert "tgsr.data.synthetic_text" in graph["tgsr.data.synthetic"]


def test_no_import_cycle():
    assert _cycles(_import_graph()) == []


def test_a_cycle_is_found():  # the detector itself
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_one_lowpass():
    from tgsr.data import degradations
    from tgsr.ops import gaussian_kernel, lowpass

    assert degradations.lowpass is lowpass and degradations.gaussian_kernel is gaussian_kernel


def test_every_configurable_format_has_a_reader():
    from tgsr.data.loader import FORMATS, READERS

    formats = typing.get_args(typing.get_type_hints(DataConfig)["format"])
    assert set(FORMATS) == set(formats)
    assert set(READERS) == set(formats) - {"synthetic"}


def test_synth_command_knows_the_splits():
    from tgsr.cli.synth import SPLITS
    from tgsr.data.synthetic import SPLITS as DATA_SPLITS

    assert SPLITS == DATA_SPLITS


def test_cli_starts_without_torch():
    code = "import sys, tgsr.cli.app; print(sorted(m for m in ('torch', 'gradio') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_one_version():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == tgsr.__version__
