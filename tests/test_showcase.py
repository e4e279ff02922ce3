"""``benchmarks/showcase.py``: pictures of a trained run on freely licensed photographs (issue 9).

Tiny seeded pipelines and a generated photograph stand in for a trained run and a Debian
package; the numbers in ``showcase.json`` are checked against the pipeline run directly."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_pipeline import make_pipeline_dir, natural_image
from tgsr.colours import swap_colour

REPO = Path(__file__).resolve().parents[1]
CAPTION = "a red and cyan striped circle"  # words of the tiny pipelines' vocabulary


def _showcase():
    spec = importlib.util.spec_from_file_location("showcase", REPO / "benchmarks" / "showcase.py")
    module = sys.modules.setdefault("showcase", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def _photo(photos: Path, name: str, size: tuple[int, int], seed: int, **extra) -> dict:
    rel = f"usr/share/pkg/{name}.jpg"
    path = photos / "pkg" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(natural_image(*size, seed=seed)).save(path, quality=95)
    return {"name": name, "package": "pkg", "file": rel,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "hr_size": 32,
            "caption": CAPTION, "edits": ["blue", "green"], "licence": "CC0 (test)", **extra}  # fmt: skip


def _manifest(tmp_path: Path, photos: list[dict]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"photos": photos}))
    return path


def test_the_shipped_manifest_names_a_licence_and_valid_edits_for_every_photo():
    sc = _showcase()
    photos = sc.load_manifest()
    assert photos
    for p in photos:
        assert re.fullmatch(r"[0-9a-f]{64}", p.sha256) and p.licence and p.source
        assert p.hr_size % 16 == 0  # x4, x8 and x16 models all get a whole LR image
        for new in p.edits:
            swapped = swap_colour(p.caption, new)
            assert swapped is not None and swapped[2] == new


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("showcase")
    model = make_pipeline_dir(tmp / "tgsr")
    baseline = make_pipeline_dir(tmp / "base", use_text=False)
    photos = tmp / "photos"
    entries = [_photo(photos, "wide", (90, 120), 0, box=[20, 10, 60, 50]),
               _photo(photos, "small", (36, 44), 1)]  # smaller than the crop: upsampled  # fmt: skip
    manifest = _manifest(tmp, entries)
    out = tmp / "out"
    report = _showcase().render(model, baseline, photos, out, manifest)
    return report, model, photos, manifest, out


def test_render_measures_each_edit_as_the_pipeline_outputs_say(rendered):
    from tgsr.data.datasets import bbox_crop, prepare_image
    from tgsr.data.degradations import degrade, quantize
    from tgsr.evaluation.caption_response import caption_response
    from tgsr.evaluation.metrics import psnr_y
    from tgsr.pipeline import TGSRPipeline

    report, model, photos, manifest, out = rendered
    sc = _showcase()
    assert json.loads((out / sc.JSON_NAME).read_text())["photos"] == report["photos"]
    first = report["photos"][0]
    assert [p["name"] for p in report["photos"]] == ["wide", "small"]
    assert set(first["metrics"]) == {"bicubic", "tgsr", "baseline"}
    assert first["lr_size"] == [4, 4] and report["scale"] == 8
    # the ground truth is the data sets' eval crop of the boxed photograph
    photo = sc.load_manifest(manifest)[0]
    img = np.asarray(Image.open(photos / "pkg" / photo.file).convert("RGB"))
    gt_u8 = prepare_image(bbox_crop(img, (20, 10, 60, 50)), 32, 76 / 64, None, "wide")
    assert np.array_equal(sc.ground_truth(photo, photos / "pkg" / photo.file), gt_u8)
    # the same numbers from the pipeline, run here directly
    gt = torch.from_numpy(np.ascontiguousarray(gt_u8)).permute(2, 0, 1).float().div(255)[None]
    lq = quantize(degrade(gt, 8))
    pipe = TGSRPipeline.from_pretrained(model, dtype="float32")
    edited = [swap_colour(CAPTION, c)[0] for c in ("blue", "green")]
    sr = pipe(lq.repeat(3, 1, 1, 1), [CAPTION, *edited], output_type="pt").images.float()
    assert first["metrics"]["tgsr"]["psnr_y"] == pytest.approx(float(psnr_y(sr[:1], gt)), abs=1e-3)
    want = caption_response(sr[:1].expand(2, -1, -1, -1), sr[1:], ["red", "red"], ["blue", "green"])
    got = first["edits"]
    assert [(e["old"], e["new"], e["caption"]) for e in got] == [
        ("red", "blue", edited[0]), ("red", "green", edited[1])]  # fmt: skip
    for e, w in zip(got, want, strict=True):
        assert e["change_top10_levels"] == pytest.approx(w.change, abs=1e-3)
        assert e["toward"] == w.toward
    assert max(e["change_top10_levels"] for e in got) > 0  # the tiny model reads the caption


def test_render_draws_one_row_per_photo_and_the_first_under_every_caption(rendered):
    report, *_, out = rendered
    sc = _showcase()
    rows, caps = Image.open(out / sc.ROWS_PNG), Image.open(out / sc.CAPTIONS_PNG)
    assert report["figures"] == [str(out / sc.ROWS_PNG), str(out / sc.CAPTIONS_PNG)]
    # rows: 5 columns of >= 192 px, two photos; captions: LR + 3 captions + 2 differences
    assert caps.width > rows.width >= 5 * 192 and rows.height > caps.height


def test_bad_photographs_and_manifests_stop_with_one_line(tmp_path):
    sc = _showcase()
    photos = tmp_path / "photos"
    entry = _photo(photos, "p", (40, 40), 0)
    model = make_pipeline_dir(tmp_path / "tgsr")

    def error(entries, **kw) -> str:
        with pytest.raises(SystemExit) as exc:
            sc.render(model, None, kw.get("photos", photos), tmp_path / "o",
                      _manifest(tmp_path, entries))  # fmt: skip
        msg = str(exc.value)
        assert msg.startswith("error: ") and "\n" not in msg
        return msg

    assert "SHA-256" in error([{**entry, "sha256": "0" * 64}])
    assert "--fetch" in error([entry], photos=tmp_path / "elsewhere")
    assert "cannot swap" in error([{**entry, "caption": "a striped circle"}])
    assert "distinct" in error([{**entry, "edits": ["blue", "blue"]}])
    assert "licence" in error([{k: v for k, v in entry.items() if k != "licence"}])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="not a showcase manifest"):
        sc.load_manifest(tmp_path / "bad.json")
    no_text = make_pipeline_dir(tmp_path / "base", use_text=False)
    with pytest.raises(SystemExit, match="no-text model"):
        sc.render(no_text, None, photos, tmp_path / "o", _manifest(tmp_path, [entry]))


def test_fetch_names_the_missing_tool(tmp_path, monkeypatch):
    sc = _showcase()
    monkeypatch.setattr(sc.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit, match="needs apt-get"):
        sc.fetch(tmp_path, sc.load_manifest())
