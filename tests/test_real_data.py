"""Real photographs through the paper's data protocol (issue 9, item 1).

* the shared sample of real CUB birds / COCO photographs (``../shared/data/real_sample``; skipped
  when absent): ``tgsr damsm train`` and the five Table 2 ablation presets train 20 steps at the
  paper's 256-px crop, although many birds are smaller than 256 px;
* a fixture in the CUB layout with tiny images (40x30), a bounding-box file and one image below
  the floor (an image that fits inside 32x32);
* the resize-up-or-down protocol, the floor, the decode cache, ``tgsr data check`` on small
  images, aligned CelebA (178x218) in the released preset.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tgsr.cli.app import app
from tgsr.config import DataConfig, load_config
from tgsr.data import datasets as ds
from tgsr.data.loader import build_dataset, build_vocabulary, check_dataset
from tgsr.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "real_sample"
ABLATIONS = sorted(p.stem for p in (REPO / "src" / "tgsr" / "configs" / "ablations").glob("*.yaml"))

TINY_NETS = [
    "data.num_workers=0",
    "damsm.text_encoder.embedding_dim=8", "damsm.text_encoder.hidden_dim=8",
    "damsm.image_encoder.kind=light", "damsm.image_encoder.feature_dim=16",
    "damsm.image_encoder.light_channels=4", "damsm.image_encoder.light_input_size=32",
    "damsm_train.batch_size=4", "damsm_train.mixed_precision=no",
    "generator.channels=4", "discriminator.channels=4",
    "train.batch_size=2", "train.mixed_precision=no", "train.channels_last=false",
]  # fmt: skip


def _invoke(args: list[str]):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res


def _train_all(config: str, sets: list[str], tmp_path: Path, steps: int) -> None:
    """``tgsr damsm train`` once, then every ablation preset ``steps`` steps on its DAMSM."""
    args = [a for s in sets for a in ("--set", s)]
    damsm = tmp_path / "damsm"
    _invoke(["damsm", "train", "--config", config, "--out", str(damsm), "--cpu", *args,
             "--set", f"damsm_train.max_steps={steps}"])  # fmt: skip
    for preset in ABLATIONS:
        run = tmp_path / preset
        _invoke(["train", "--config", f"ablations/{preset}", "--out", str(run), "--cpu", *args,
                 "--set", f"train.max_steps={steps}", "--set", f"damsm.path={damsm}"])  # fmt: skip
        assert (run / "generator").is_dir()


def test_five_ablations_exist():
    assert ABLATIONS == ["baseline", "coarse_to_fine", "tam", "tgsr", "tic"]


# ----------------------------------------------------------------------------- shared sample


@pytest.mark.slow
def test_shared_cub_sample_trains_at_256_px(tmp_path):
    root = SAMPLE / "cub"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    cfg = DataConfig(format="cub", root=str(root), hr_size=256)
    report = check_dataset(cfg, "train")
    assert report["small"], "the sample is expected to hold birds smaller than 256 px"
    assert report["unreadable"] == [] and report["too_small"] == []
    _train_all("cub_x8", [*TINY_NETS, f"data.root={root}"], tmp_path, steps=20)


@pytest.mark.slow
def test_shared_coco_sample_trains_every_ablation(tmp_path):
    root = SAMPLE / "coco"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    sets = [*TINY_NETS, f"data.root={root}", "data.format=coco", "data.hr_size=128"]
    _train_all("coco_x8", sets, tmp_path, steps=5)


def test_data_check_on_the_shared_sample_exits_0(tmp_path):
    root = SAMPLE / "cub"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    res = CliRunner().invoke(
        app, ["data", "check", str(root), "--format", "cub", "--split", "train", "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["images"] == 215 and report["small"] and report["too_small"] == []


# ----------------------------------------------------------------------------- tiny fixture

NAMES = {
    "train": ["001.Red_Bird/Red_Bird_0001_1", "001.Red_Bird/Red_Bird_0002_2",
              "001.Red_Bird/Red_Bird_0003_3", "002.Blue_Bird/Blue_Bird_0004_4",
              "002.Blue_Bird/Blue_Bird_0005_5", "002.Blue_Bird/Blue_Bird_0006_6"],
    "test": ["003.Grey_Bird/Grey_Bird_0007_7", "003.Grey_Bird/Grey_Bird_0008_8"],
}  # fmt: skip
SIZES = [(30, 40), (45, 33), (120, 90), (32, 32), (200, 150), (64, 400), (40, 30), (500, 375)]


def make_tiny_cub(root: Path, with_floor_violation: bool = False) -> list[str]:
    """CUB layout with images from 40x30 up to 500x375 and a bounding box for each."""
    names = NAMES["train"] + NAMES["test"]
    rng = np.random.default_rng(0)
    boxes = []
    for i, (name, (h, w)) in enumerate(zip(names, SIZES, strict=True)):
        path = root / "CUB_200_2011" / "images" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        text = root / "text" / f"{name}.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        colour = name.split(".")[1].split("_")[0].lower()
        text.write_text("\n".join(f"a small {colour} bird with short wings {k}" for k in range(3)))
        boxes.append(f"{i + 1} {w * 0.25:.1f} {h * 0.25:.1f} {w * 0.4:.1f} {h * 0.4:.1f}")
    for split, items in NAMES.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / split / "filenames.pickle", "wb") as f:
            pickle.dump(items, f, protocol=2)
    (root / "CUB_200_2011" / "images.txt").write_text(
        "\n".join(f"{i + 1} {n}.jpg" for i, n in enumerate(names)) + "\n"
    )
    (root / "CUB_200_2011" / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    if with_floor_violation:
        Image.new("RGB", (20, 24)).save(root / "CUB_200_2011" / "images" / f"{names[0]}.jpg")
    return names


def test_tiny_fixture_with_boxes_trains_every_ablation(tmp_path):
    root = tmp_path / "birds"
    make_tiny_cub(root)
    sets = [
        *TINY_NETS,
        f"data.root={root}",
        "data.hr_size=64",
        "damsm.image_encoder.light_input_size=32",
    ]
    _train_all("cub_x8", sets, tmp_path, steps=3)


def test_tiny_fixture_samples_have_the_crop_size_and_use_the_box(tmp_path):
    root = tmp_path / "birds"
    make_tiny_cub(root)
    cfg = DataConfig(format="cub", root=str(root), hr_size=64, scale=8, cache=False)
    vocab = build_vocabulary(cfg)
    for train in (True, False):
        dset = build_dataset(cfg, vocab, train=train)
        for i in range(len(dset)):
            s = dset[i]
            assert tuple(s["gt"].shape) == (3, 64, 64) and tuple(s["lq"].shape) == (3, 8, 8)
    rec = build_dataset(cfg, vocab, train=False, split="train").records[4]  # 200x150, 60x80 box
    assert rec.bbox is not None
    decoded = ds.decode_resized(rec, cfg, 76)
    boxed = ds.bbox_crop(ds.load_image(rec.image_path), rec.bbox)
    assert boxed.shape[:2] != (200, 150)
    assert decoded.shape == ds.resize_shorter_side(boxed, 76).shape
    # a box crop below the floor falls back to the whole image
    tiny_box = ds.Record("k", rec.image_path, ["x"], 1, (10.0, 10.0, 4.0, 4.0))
    assert ds.decode_resized(tiny_box, cfg, 76).shape == (101, 76, 3)


def test_floor_is_the_only_size_error_and_names_the_file(tmp_path):
    root = tmp_path / "birds"
    names = make_tiny_cub(root, with_floor_violation=True)
    cfg = DataConfig(format="cub", root=str(root), hr_size=64, scale=8, cache=False)
    dset = build_dataset(cfg, build_vocabulary(cfg), train=True)
    with pytest.raises(BadInputError, match=r"Red_Bird_0001_1.jpg: image 20x24 is below the floor"):
        dset[0]
    for i in range(1, len(dset)):
        assert dset[i]["gt"].shape[-1] == 64
    report = check_dataset(cfg, "train")
    assert len(report["too_small"]) == 1 and names[0] in report["too_small"][0]
    res = CliRunner().invoke(app, ["data", "check", str(root), "-f", "cub", "--hr-size", "64",
                                   "--json"])  # fmt: skip
    assert res.exit_code == 1


def test_data_check_reports_small_images_as_information(tmp_path):
    root = tmp_path / "birds"
    make_tiny_cub(root)
    res = CliRunner().invoke(app, ["data", "check", str(root), "-f", "cub", "--hr-size", "256",
                                   "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert len(report["small"]) == 6 and report["too_small"] == [] and report["unreadable"] == []
    table = CliRunner().invoke(app, ["data", "check", str(root), "-f", "cub", "--hr-size", "256"])
    assert table.exit_code == 0 and "upsampled" in table.output


# ----------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize("shape", [(30, 40), (40, 30), (300, 256), (1000, 333), (32, 32)])
def test_resize_up_or_down_to_the_load_size(shape):
    img = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    size = ds.load_size(256, 76 / 64)
    assert size == 304
    out = ds.resize_shorter_side(img, size)
    assert min(out.shape[:2]) == 304
    h, w = shape
    long_expected = round(max(h, w) * 304 / min(h, w))
    assert max(out.shape[:2]) == long_expected
    assert (out.shape[0] >= out.shape[1]) == (h >= w)
    for crop_at in (None, (0.0, 0.0), (0.999, 0.999)):
        assert ds.prepare_image(img, 256, 76 / 64, crop_at, "x").shape == (256, 256, 3)


def test_load_ratio_below_one_still_gives_the_crop():
    assert ds.load_size(64, 0.5) == 64


def test_aligned_celeba_in_the_released_preset(tmp_path):
    """Aligned CelebA (178x218) is upsampled to 288 on its shorter side, then the 256 crop."""
    cfg = load_config("celeba_attr_released_x8")
    assert ds.load_size(cfg.data.hr_size, cfg.data.load_ratio) == 288
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        name = f"{i + 1:06d}.jpg"
        img = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "img_align_celeba" / name)
        rows.append(f"{name} 1 {i % 2} 0")
    (root / "list_attr_celeba.txt").write_text("Smiling Blurry Young\n" + "\n".join(rows) + "\n")
    from dataclasses import replace

    data = replace(cfg.data, root=str(root), cache=False)
    dset = build_dataset(data, build_vocabulary(data), train=True)
    assert tuple(dset[0]["gt"].shape) == (3, 256, 256) and tuple(dset[0]["lq"].shape) == (3, 32, 32)


# ----------------------------------------------------------------------------- the cache


def test_decode_cache_is_used_and_keyed_by_file_and_size(tmp_path, monkeypatch):
    root = tmp_path / "birds"
    make_tiny_cub(root)
    cache = tmp_path / "cache"
    cfg = DataConfig(format="cub", root=str(root), hr_size=64, scale=8, cache_dir=str(cache))
    vocab = build_vocabulary(cfg)
    dset = build_dataset(cfg, vocab, train=False)
    first = [dset[i]["gt"] for i in range(len(dset))]
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == len(dset)
    assert not list(cache.rglob(".tmp-*")), "no temporary file left behind"
    assert len({f.parent for f in files}) == 1 and files[0].parent.name.endswith("-76")

    def no_decode(path):
        raise AssertionError(f"decoded {path} although it is cached")

    monkeypatch.setattr(ds, "load_image", no_decode)
    again = build_dataset(cfg, vocab, train=False)
    for i, gt in enumerate(first):
        assert (again[i]["gt"] == gt).all()
    monkeypatch.undo()

    # another size -> another folder; an edited image -> decoded again
    other = build_dataset(DataConfig(**{**cfg.__dict__, "hr_size": 32}), vocab, train=False)
    other[0]
    assert len({f.parent for f in cache.rglob("*.npy")}) == 2
    rec = dset.records[0]
    Image.fromarray(np.full((50, 60, 3), 200, np.uint8)).save(rec.image_path)
    fresh = build_dataset(cfg, vocab, train=False)[0]["gt"]
    assert float(fresh.mean()) == pytest.approx(200 / 255, abs=0.01)
    # a damaged cache file is decoded again
    for f in cache.rglob("*.npy"):
        f.write_bytes(b"junk")
    assert (build_dataset(cfg, vocab, train=False)[1]["gt"] == first[1]).all()


def test_cache_off_writes_nothing(tmp_path):
    root = tmp_path / "birds"
    make_tiny_cub(root)
    cache = tmp_path / "cache"
    cfg = DataConfig(format="cub", root=str(root), hr_size=64, scale=8, cache=False,
                     cache_dir=str(cache))  # fmt: skip
    build_dataset(cfg, build_vocabulary(cfg), train=True)[0]
    assert not cache.exists()
