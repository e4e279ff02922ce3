"""The Python examples of docs/usage.md run as written, on a tiny exported model, and the values
their comments show (where a comment is a Python literal) are what the code returns."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_pipeline import make_pipeline_dir, natural_image
from tgsr import TGSRPipeline

USAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run_block(code: str, namespace: dict) -> list[tuple[str, object, object]]:
    """Execute ``code`` statement by statement; for each expression statement whose trailing
    comment is a Python literal, record (source, value, literal)."""
    checks = []
    lines = code.splitlines()
    for node in ast.parse(code).body:
        source = ast.get_source_segment(code, node)
        exec(compile(ast.Module([node], []), "<docs/usage.md>", "exec"), namespace)
        line = lines[node.end_lineno - 1]
        if isinstance(node, ast.Expr) and "#" in line:
            comment = line.split("#", 1)[1].strip()
            try:
                literal = ast.literal_eval(comment)
            except (ValueError, SyntaxError):
                continue
            checks.append((source, eval(source, namespace), literal))
    return checks


def _block(marker: str) -> str:
    blocks = [b for b in python_blocks(USAGE.read_text()) if marker in b]
    assert len(blocks) == 1, f"one python block of docs/usage.md with {marker!r}"
    return blocks[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_pipeline_dir(tmp_path_factory.mktemp("docs_model"))


def test_the_pipeline_example_runs_and_its_comments_hold(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(model_dir, tmp_path / "tgsr_quickstart" / "model")
    Image.fromarray(natural_image(8, 8)).save("lr.png")
    ns: dict = {}
    checks = run_block(_block("TGSRPipeline.from_pretrained"), ns)
    assert checks, "the example shows at least one value in a comment"
    for source, value, literal in checks:
        assert value == literal, (
            f"docs/usage.md: {source} gives {value!r}, the comment says {literal!r}"
        )
    assert Image.open("sr.png").size == (64, 64)  # "scale x the input"
    assert ns["result"].attention[0].shape[0] == 6  # "(6, H', W'): one map per word"
    assert TGSRPipeline.from_pretrained("copy/").scale == 8  # "the same folder layout"


def test_the_onnx_example_runs_and_matches_the_pipeline(model_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tgsr.export import export_onnx

    monkeypatch.chdir(tmp_path)
    pipe = TGSRPipeline.from_pretrained(model_dir, dtype="fp32")
    export_onnx(pipe, model_dir / "onnx")
    lr = natural_image(8, 8, seed=1)
    Image.fromarray(lr).save("lr.png")
    code = _block("onnxruntime").replace("DIR/", f"{model_dir}/")
    ns: dict = {}
    run_block(code, ns)
    expected = pipe(lr, "a red and cyan striped circle", output_type="np", lr_guard=0).image
    got = np.asarray(Image.open("sr.png"))
    assert got.shape == expected.shape == (64, 64, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_the_comment_check_sees_a_wrong_comment():
    ns: dict = {}
    checks = run_block("x = [1, 2]\nlen(x)  # 3\nx[0]  # 1\nx  # a list\n", ns)
    assert [(s, v, lit) for s, v, lit in checks] == [("len(x)", 2, 3), ("x[0]", 1, 1)]
