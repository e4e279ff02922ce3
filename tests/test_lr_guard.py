"""The LR guard (tgsr.lr_guard): outputs kept within a set LR-PSNR of their input, minimally."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers_pipeline import make_pipeline_dir, natural_image
from tgsr.data.degradations import degrade, image_to_tensor
from tgsr.errors import BadInputError, ModelFormatError
from tgsr.evaluation.metrics import lr_psnr
from tgsr.lr_guard import back_project, check_guard_db, lr_guard
from tgsr.pipeline import TGSRPipeline


def _scene(seed: int = 0, size: int = 64, scale: int = 8):
    """A photograph-like HR image, its LR input, and an "output" whose red channel is raised
    by 0.2 in a square (an edit the LR image does not show), with a fine checkerboard on top
    (a detail the LR image cannot show either)."""
    gt = image_to_tensor(natural_image(size, size, seed=seed))[None]
    lq = degrade(gt, scale)
    sr = gt.clone()
    sr[:, 0, 16:40, 16:40] += 0.2
    checker = (torch.arange(size)[:, None] + torch.arange(size)[None]) % 2 * 0.06 - 0.03
    sr = (sr + checker).clamp(0, 1)
    return gt, lq, sr, checker


def test_back_projection_reaches_the_lr_input():
    _, lq, sr, _ = _scene()
    assert float(lr_psnr(sr, lq, 8)) < 35
    assert float(lr_psnr(back_project(sr, lq, 8), lq, 8)) > 50


@pytest.mark.parametrize("bound", [36.0, 40.0, 44.0])
def test_guard_meets_the_bound_with_the_smallest_pull(bound):
    _, lq, sr, _ = _scene()
    before = float(lr_psnr(sr, lq, 8))
    out, alpha = lr_guard(sr, lq, 8, bound)
    a = float(alpha[0])
    assert 0 < a < 1
    assert float(lr_psnr(out, lq, 8)) >= bound
    # minimal: pulled 0.01 less, it would miss the bound
    less = sr + (a - 0.01) / a * (out - sr)
    assert float(lr_psnr(less, lq, 8)) < bound
    # a tighter bound pulls further
    if bound < 44:
        assert float(lr_guard(sr, lq, 8, bound + 4)[1][0]) > a
    assert before < bound


def test_guard_keeps_outputs_within_the_bound_and_the_details():
    gt, lq, sr, checker = _scene(seed=3)
    ok = (gt + checker).clamp(0, 1)  # its LR error is tiny: within 40 dB already
    batch_sr, batch_lq = torch.cat([sr, ok]), torch.cat([lq, lq])
    out, alpha = lr_guard(batch_sr, batch_lq, 8, 40.0)
    assert float(alpha[1]) == 0.0 and torch.equal(out[1], ok[0])  # untouched
    # the checkerboard (invisible at LR) survives in the pulled output
    kept = ((out[0] - gt[0]) * checker).sum() / (checker * checker).sum() / 3
    assert float(kept) > 0.8
    # the edit shrinks but is not undone: the red square still stands out
    lift = float((out[0, 0, 16:40, 16:40] - gt[0, 0, 16:40, 16:40]).mean())
    assert 0.02 < lift < 0.2


def test_guard_validates_its_arguments():
    _, lq, sr, _ = _scene()
    with pytest.raises(ValueError, match="min_psnr"):
        lr_guard(sr, lq, 8, float("nan"))
    with pytest.raises(ValueError, match="batches"):
        lr_guard(sr[0], lq[0], 8, 40.0)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "40", [40]])
def test_one_rule_checks_every_guard_bound(bad):
    # the pipeline call, pipeline.json, the export and the CLI all use check_guard_db
    assert check_guard_db(None, zero_is_off=False) is None
    assert check_guard_db(40, zero_is_off=False) == 40.0
    assert isinstance(check_guard_db(40, zero_is_off=False), float)
    assert check_guard_db(0, zero_is_off=True) == 0.0
    with pytest.raises(ValueError, match="positive number of dB, got 0"):
        check_guard_db(0, zero_is_off=False)
    for zero_is_off in (False, True):
        with pytest.raises(ValueError, match="--lr-guard must be"):
            check_guard_db(bad, zero_is_off=zero_is_off, name="--lr-guard")


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("guard") / "model")


def test_pipeline_applies_the_folders_guard_and_the_call_overrides_it(pipe_dir, tmp_path):
    lq = image_to_tensor(natural_image(12, 12, seed=1))[None]
    plain = TGSRPipeline.from_pretrained(pipe_dir, dtype="float32")
    raw = plain(lq, "a red circle", output_type="pt")
    assert raw.lr_guard_alpha is None
    bound = float(lr_psnr(raw.images, lq, 8)) + 3  # the random model misses this
    guarded = plain(lq, "a red circle", output_type="pt", lr_guard=bound)
    assert float(guarded.lr_guard_alpha[0]) > 0
    assert float(lr_psnr(guarded.images, lq, 8)) >= bound - 0.05  # uint8-free: pt output
    # the same bound written into pipeline.json is the folder's default; 0 switches it off
    info = json.loads((pipe_dir / "pipeline.json").read_text())
    folder = tmp_path / "guarded"
    folder.mkdir()
    for item in pipe_dir.iterdir():
        (folder / item.name).symlink_to(item)
    (folder / "pipeline.json").unlink()
    (folder / "pipeline.json").write_text(json.dumps({**info, "lr_guard": bound}))
    pipe = TGSRPipeline.from_pretrained(folder, dtype="float32")
    assert torch.allclose(pipe(lq, "a red circle", output_type="pt").images, guarded.images)
    assert torch.equal(pipe(lq, "a red circle", output_type="pt", lr_guard=0).images, raw.images)
    with pytest.raises(BadInputError, match="lr_guard"):
        pipe(lq, "a red circle", lr_guard=-1)
    (folder / "pipeline.json").write_text(json.dumps({**info, "lr_guard": "high"}))
    with pytest.raises(ModelFormatError, match="lr_guard"):
        TGSRPipeline.from_pretrained(folder)


def test_upscale_cli_reports_the_pull(pipe_dir, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from helpers_cli import run_tgsr as tgsr

    photo = tmp_path / "in.png"
    Image.fromarray(natural_image(10, 10, seed=2)).save(photo)
    code, out, err = tgsr(monkeypatch, capsys, "upscale", photo, "--model", pipe_dir,
                          "--text", "a red circle", "--out", tmp_path / "o", "--lr-guard", "50")  # fmt: skip
    assert code == 0, err
    entry = json.loads((tmp_path / "o" / "results.jsonl").read_text())
    assert entry["lr_guard_alpha"] > 0
    sr = np.asarray(Image.open(tmp_path / "o" / "in.png"))
    lq = image_to_tensor(np.asarray(Image.open(photo).convert("RGB")))[None]
    assert float(lr_psnr(image_to_tensor(sr)[None], lq, 8)) >= 50
    code, _, err = tgsr(monkeypatch, capsys, "upscale", photo, "--model", pipe_dir,
                        "--out", tmp_path / "o2", "--lr-guard", "-3")  # fmt: skip
    assert code != 0 and "--lr-guard" in err


def test_export_writes_the_guard(pipe_dir, tmp_path, monkeypatch, capsys):
    from helpers_cli import run_tgsr as tgsr

    run = pipe_dir.parent / "run"
    code, _, err = tgsr(monkeypatch, capsys, "export", run, "--out", tmp_path / "m",
                        "--lr-guard", "41.5")  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "pipeline.json").read_text())["lr_guard"] == 41.5
    assert TGSRPipeline.from_pretrained(tmp_path / "m").info.lr_guard == 41.5
    code, _, err = tgsr(monkeypatch, capsys, "export", run, "--out", tmp_path / "m2",
                        "--lr-guard", "-1")  # fmt: skip
    assert code != 0 and "lr_guard" in err


def test_speed_benchmark_times_the_guard_on_both_cases():
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    spec = importlib.util.spec_from_file_location("speed_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.section_guard(argparse.Namespace(repeats=1), torch.device("cpu"),
                                 bench.Deadline(60), quick=True)  # fmt: skip
    rows = {r["case"]: r for r in result["rows"]}
    assert rows["within"]["alpha"] == 0.0 and rows["within"]["lr_psnr_before"] >= 40
    assert rows["strayed"]["lr_psnr_before"] < 35 < 40 <= rows["strayed"]["lr_psnr_after"] + 0.05
    assert 0 < rows["strayed"]["alpha"] <= 1 and rows["strayed"]["output"] == [256, 256]
