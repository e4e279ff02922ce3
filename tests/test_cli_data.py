"""`tgsr data check` and `tgsr data degrade` through the real entry point (one-line errors)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datafixtures import HR, make, write_image
from helpers_cli import run_tgsr as run
from tgsr.data.degradations import degrade, image_to_tensor, quantize, tensor_to_image
from tgsr.data.images import load_image

FORMATS = ["cub", "oxford102", "coco", "celeba_hq", "celeba_attr", "folder", "jsonl"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_json_counts(fmt, tmp_path, monkeypatch, capsys):
    root, expected = make(fmt, tmp_path)
    for split, (n_images, n_caps) in expected.items():
        code, out, err = run(
            monkeypatch, capsys, "data", "check", root, "--format", fmt, "--split", split,
            "--hr-size", HR, "--json",
        )  # fmt: skip
        assert code == 0, err
        report = json.loads(out)
        assert (report["images"], report["captions"]) == (n_images, n_caps)
        assert report["unreadable"] == [] and report["too_small"] == []


def test_check_table_oov_and_problems(tmp_path, monkeypatch, capsys):
    root, _ = make("folder", tmp_path)
    vocab_path = tmp_path / "vocab.json"
    from tgsr.text import Vocabulary

    Vocabulary.build(["a photo number"]).save(vocab_path)
    code, out, _ = run(monkeypatch, capsys, "data", "check", root, "-f", "folder", "--hr-size", HR,
                       "--vocab", vocab_path)  # fmt: skip
    assert code == 0 and "images" in out and "OOV rate" in out
    (root / "img1.png").write_bytes(b"broken")
    code, out, _ = run(monkeypatch, capsys, "data", "check", root, "-f", "folder", "--json",
                       "--hr-size", 64, "--vocab", vocab_path)  # fmt: skip
    report = json.loads(out)
    assert code == 1
    assert len(report["unreadable"]) == 1 and "img1.png" in report["unreadable"][0]
    assert report["too_small"] == []  # none below the 32-px floor
    assert len(report["small"]) == 2  # the 40x48 images are below 64: information only
    assert 0 < report["oov_rate"] < 1


def test_check_rejects_unknown_format(tmp_path, monkeypatch, capsys):
    code, _, err = run(monkeypatch, capsys, "data", "check", tmp_path, "--format", "nope")
    assert code == 2 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("scale", [4, 8])
def test_degrade_sizes_and_equality(scale, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    write_image(src / "a.jpg", 37, 50, seed=1)
    write_image(src / "b.png", 64, 64, seed=2, fmt="PNG")
    code, out, err = run(monkeypatch, capsys, "data", "degrade", src, "--scale", scale,
                         "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, err
    assert "wrote 2" in out
    for name, (h, w) in (("a", (37, 50)), ("b", (64, 64))):
        lq = load_image(tmp_path / "out" / f"{name}.png")
        assert lq.shape == (h // scale, w // scale, 3)
        gt = load_image(next(src.glob(f"{name}.*")))[: h // scale * scale, : w // scale * scale]
        expected = tensor_to_image(quantize(degrade(image_to_tensor(gt), scale)))
        assert np.array_equal(lq, expected)


def test_degrade_bilinear_and_single_file(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "x.png", 32, 32, fmt="PNG")
    code, _, _ = run(monkeypatch, capsys, "data", "degrade", tmp_path / "x.png", "-s", 4,
                     "-o", tmp_path / "o", "--method", "bilinear")  # fmt: skip
    gt = image_to_tensor(load_image(tmp_path / "x.png"))
    expected = tensor_to_image(quantize(degrade(gt, 4, "bilinear")))
    assert code == 0 and np.array_equal(load_image(tmp_path / "o" / "x.png"), expected)


def test_degrade_corrupt_image_one_line_error_and_skip(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    write_image(src / "good.png", 32, 32, fmt="PNG")
    (src / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, _, err = run(monkeypatch, capsys, "data", "degrade", src, "-s", 4, "-o", tmp_path / "o")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "bad.jpg" in lines[0] and lines[0].startswith("error:")
    code, out, err = run(monkeypatch, capsys, "data", "degrade", src, "-s", 4, "-o", tmp_path / "o",
                         "--skip-bad")  # fmt: skip
    assert code == 0 and "wrote 1" in out
    assert "skipped 1 bad image" in err and "bad.jpg" in err
    assert (tmp_path / "o" / "good.png").is_file() and not (tmp_path / "o" / "bad.png").exists()
