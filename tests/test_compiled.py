"""``compile=True`` (``TGSRPipeline.from_pretrained``, ``tgsr upscale --compile``): the same
output as eager; a compile failure is one logged warning line and an eager run, never a crash."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from helpers_pipeline import make_pipeline_dir, natural_image
from tgsr.errors import CompileError
from tgsr.pipeline import TGSRPipeline

CAPTION = "a red and cyan striped circle"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # coordinate channels: the tiles' frames go through the compiled graph as well
    return make_pipeline_dir(tmp_path_factory.mktemp("compile"), scale=4, position_code="coords")


def _broken_compile(monkeypatch, at: str):
    """torch.compile that fails at construction (``at="build"``) or at the first call."""

    def fake(module, **kw):
        if at == "build":
            raise RuntimeError("Dynamo is not supported on this Python\nsecond line")

        def call(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\ndetails")

        return call

    monkeypatch.setattr(torch, "compile", fake)


@pytest.mark.slow  # ~50 s on the busy 2-core CPU with a cold inductor cache, ~4 s warm
def test_compiled_output_equals_eager_on_tiles(model_dir):
    """8 tiles of 17x17 LR pixels (each with its coordinate frame): one static graph."""
    from torch._dynamo.utils import counters

    eager = TGSRPipeline.from_pretrained(model_dir, dtype="float32")
    compiled = TGSRPipeline.from_pretrained(model_dir, dtype="float32", compile=True)
    img = natural_image(20, 26, seed=2)
    ref = eager(img, CAPTION, output_type="pt", max_memory="1MiB")
    counters.clear()
    out = compiled(img, CAPTION, output_type="pt", max_memory="1MiB")
    assert out.tiled and ref.tiled
    assert (out.images - ref.images).abs().max() < 1e-4
    assert compiled.compile_error is None and compiled._forward.active
    assert counters["stats"]["unique_graphs"] == 1  # static shapes: no recompile per tile


@pytest.mark.parametrize("at", ["build", "call"])
def test_a_compile_failure_warns_once_and_runs_eagerly(model_dir, monkeypatch, caplog, at):
    eager = TGSRPipeline.from_pretrained(model_dir, dtype="float32")
    img = natural_image(12, 12, seed=1)
    ref = eager(img, CAPTION, output_type="pt").images
    _broken_compile(monkeypatch, at)
    with caplog.at_level(logging.WARNING, logger="tgsr"):
        pipe = TGSRPipeline.from_pretrained(model_dir, dtype="float32", compile=True)
        first = pipe(img, CAPTION, output_type="pt").images
        second = pipe(img, CAPTION, output_type="pt").images
    assert torch.equal(first, ref) and torch.equal(second, ref)
    assert isinstance(pipe.compile_error, CompileError) and not pipe._forward.active
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("tgsr")]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "running the generator eagerly" in messages[0] and "RuntimeError" in messages[0]


def test_an_error_of_the_call_itself_is_raised_and_compile_stays_on(monkeypatch):
    from tgsr.compiled import CompiledForward

    def fake(module, **kw):
        return module  # "compiled" = the module itself: both raise on a bad input

    monkeypatch.setattr(torch, "compile", fake)
    fwd = CompiledForward(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(RuntimeError):
        fwd(torch.rand(1, 5, 8, 8))  # wrong channel count
    assert fwd.active and fwd.error is None


def test_cli_compile_flag_with_a_failing_compile(model_dir, tmp_path, monkeypatch, capsys, caplog):
    from PIL import Image

    from tgsr.cli.app import main

    Image.fromarray(natural_image(10, 12, seed=0)).save(tmp_path / "in.png")
    _broken_compile(monkeypatch, "call")
    argv = ["tgsr", "upscale", str(tmp_path / "in.png"), "--model", str(model_dir),
            "--text", CAPTION, "--out", str(tmp_path / "out"), "--compile"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with caplog.at_level(logging.WARNING, logger="tgsr"), pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 0, err
    assert "Traceback" not in err and (tmp_path / "out" / "in.png").is_file()
    assert any("torch.compile" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("user_level", [logging.NOTSET, logging.INFO])
def test_the_first_call_quiets_torch_cpp_extension_unless_the_user_set_it(monkeypatch, user_level):
    """torch logs "No CUDA runtime is found, using CUDA_HOME=..." when the first compile imports
    torch.utils.cpp_extension on a GPU-less machine with a CUDA folder."""
    from tgsr.compiled import CompiledForward

    cpp_log = logging.getLogger("torch.utils.cpp_extension")
    before = cpp_log.level
    cpp_log.setLevel(user_level)  # setLevel, not a bare attribute: it clears logging's cache
    try:
        monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
        CompiledForward(torch.nn.Conv2d(3, 4, 3))(torch.rand(1, 3, 8, 8))
        assert cpp_log.level == (logging.ERROR if user_level == logging.NOTSET else user_level)
    finally:
        cpp_log.setLevel(before)
