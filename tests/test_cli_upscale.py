"""`tgsr upscale`: files, folders, manifests, several captions, attention maps, bad inputs."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from helpers_cli import one_error_line
from helpers_cli import run_tgsr as tgsr
from helpers_pipeline import make_pipeline_dir, natural_image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("cli"), scale=8)


def _photos(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(natural_image(h, w, seed=i)).save(folder / f"photo{i}.png")
    return folder


def test_folder_outputs_are_exactly_scale_times(model_dir, tmp_path, monkeypatch, capsys):
    photos = _photos(tmp_path / "photos", [(9, 13), (16, 11), (7, 7)])
    Image.fromarray(natural_image(10, 10, seed=9)).save(photos / "photo3.jpg", quality=90)
    (photos / "notes.txt").write_text("not an image: ignored in folders")
    code, out, err = tgsr(monkeypatch, capsys, "upscale", photos, "--model", model_dir,
                          "--text", "a red circle", "--out", tmp_path / "out")  # fmt: skip
    assert code == 0, err
    assert "wrote 4 image(s)" in out
    for p in sorted(photos.glob("photo*")):
        w, h = Image.open(p).size
        sr = np.asarray(Image.open(tmp_path / "out" / f"{p.stem}.png"))
        assert sr.shape == (h * 8, w * 8, 3) and sr.dtype == np.uint8
    entries = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(entries) == 4 and all(e["caption"] == "a red circle" for e in entries)


def test_manifest_with_relative_paths_and_several_captions(
    model_dir, tmp_path, monkeypatch, capsys
):
    data = _photos(tmp_path / "data" / "imgs", [(8, 8), (6, 9)])
    manifest = tmp_path / "data" / "list.jsonl"
    manifest.write_text(
        json.dumps({"image": "imgs/photo0.png", "caption": "a red circle"}) + "\n\n"
        + json.dumps({"image": str(data / "photo1.png"),
                      "captions": ["a blue square", "a green star", ""]}) + "\n"
    )  # fmt: skip
    code, out, err = tgsr(monkeypatch, capsys, "upscale", manifest, "-m", model_dir,
                          "--out", tmp_path / "out", "--scale", 8)  # fmt: skip
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["photo0.png", "photo1_1.png", "photo1_2.png", "photo1_3.png",
                     "photo1_grid.png", "results.jsonl"]  # fmt: skip
    a, b = (
        np.asarray(Image.open(tmp_path / "out" / f"photo1_{k}.png"), dtype=float) for k in (1, 2)
    )
    assert a.shape == (48, 72, 3) and np.abs(a - b).max() > 0  # each caption its own output


def test_several_texts_give_outputs_grid_and_attention(model_dir, tmp_path, monkeypatch, capsys):
    img = tmp_path / "bird.png"
    Image.fromarray(natural_image(8, 10)).save(img)
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", model_dir, "-o", tmp_path / "o",
                        "-t", "a red and cyan striped circle", "-t", "a zebra square",
                        "--save-attention")  # fmt: skip
    assert code == 0, err
    assert "zebra" in err  # the unknown word is reported
    out = tmp_path / "o"
    assert (out / "bird_1.png").is_file() and (out / "bird_2.png").is_file()
    grid = Image.open(out / "bird_grid.png")
    assert grid.size[0] > 3 * 80  # LR input + two outputs side by side
    maps = sorted(p.name for p in (out / "bird_1_attention").iterdir())
    assert maps == ["00_a.png", "01_red.png", "02_and.png", "03_cyan.png", "04_striped.png",
                    "05_circle.png", "overview.png"]  # fmt: skip
    assert Image.open(out / "bird_1_attention" / "01_red.png").size == (80, 64)
    assert (out / "bird_2_attention" / "01_zebra.png").is_file()


def test_scale_mismatch_is_one_line(model_dir, tmp_path, monkeypatch, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(natural_image(8, 8)).save(img)
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", model_dir, "-o", tmp_path / "o",
                        "--scale", 4)  # fmt: skip
    assert code == 2
    line = one_error_line(err)
    assert "--scale 4" in line and "x8" in line


def test_bad_files_stop_or_are_skipped(model_dir, tmp_path, monkeypatch, capsys):
    photos = _photos(tmp_path / "p", [(8, 8), (8, 8)])
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (photos / "fake.jpg").write_text("hello")
    code, _, err = tgsr(
        monkeypatch, capsys, "upscale", photos, "-m", model_dir, "-o", tmp_path / "o"
    )
    assert code == 2 and "broken.png" in one_error_line(err)
    code, out, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir,
                          "-o", tmp_path / "o2", "--skip-bad")  # fmt: skip
    assert code == 0
    assert "wrote 2 image(s)" in out and "skipped 2 bad input(s)" in out
    assert "broken.png" in err and "fake.jpg" in err
    bad_manifest = tmp_path / "m.jsonl"
    bad_manifest.write_text('{"image": "x.png", "captions": "not a list"}\n')
    code, _, err = tgsr(
        monkeypatch, capsys, "upscale", bad_manifest, "-m", model_dir, "-o", tmp_path / "o3"
    )
    assert code == 2 and "m.jsonl:1" in one_error_line(err)


def test_bad_model_folder_is_one_line(model_dir, tmp_path, monkeypatch, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(natural_image(8, 8)).save(img)
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "text_encoder" / "model.safetensors").write_bytes(b"\x00" * 20)
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", broken, "-o", tmp_path / "o")
    assert code == 2
    line = one_error_line(err)
    assert "text_encoder" in line and "corrupt" in line


def test_large_image_is_tiled_automatically(model_dir, tmp_path, monkeypatch, capsys):
    small_tiles = tmp_path / "model"
    shutil.copytree(model_dir, small_tiles)
    info = json.loads((small_tiles / "pipeline.json").read_text())
    (small_tiles / "pipeline.json").write_text(json.dumps({**info, "tile": 12, "tile_overlap": 4}))
    img = tmp_path / "big.png"
    Image.fromarray(natural_image(14, 20)).save(img)
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", small_tiles, "-o", tmp_path / "o",
                        "-t", "a red circle")  # fmt: skip
    assert code == 0, err
    entry = json.loads((tmp_path / "o" / "results.jsonl").read_text())
    assert entry["tiled"] is True
    assert Image.open(tmp_path / "o" / "big.png").size == (160, 112)


def test_demo_without_gradio_gives_the_install_hint(model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    code, _, err = tgsr(monkeypatch, capsys, "demo", "--model", model_dir, "--port", 0)
    assert code == 2 and "pip install 'tgsr[demo]'" in one_error_line(err)
