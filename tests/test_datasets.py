"""Real data-set readers on tiny fixtures, the dataset class and the loader entry points."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from datafixtures import ATTRS, HR, make, make_celeba_attr, write_image, write_lines
from tgsr.config import DataConfig
from tgsr.data.datasets import (
    bbox_crop,
    prepare_image,
    read_captions,
    read_name_list,
    resize_shorter_side,
)
from tgsr.data.degradations import degrade, quantize
from tgsr.data.loader import build_dataset, build_vocabulary, check_dataset, collate, read_records
from tgsr.errors import BadInputError, TGSRError

FORMATS = ["cub", "oxford102", "coco", "celeba_hq", "celeba_attr", "folder", "jsonl"]


def cfg(fmt, root, **kw) -> DataConfig:
    c = DataConfig(format=fmt, root=str(root), hr_size=HR, scale=4, max_words=8, **kw)
    c.validate()
    return c


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_and_builds_samples(fmt, tmp_path):
    root, expected = make(fmt, tmp_path)
    c = cfg(fmt, root)
    for split, (n_images, n_caps) in expected.items():
        records = read_records(c, split)
        assert len(records) == n_images, split
        assert sum(len(r.captions) for r in records) == n_caps, split
        assert all(r.image_path.is_file() for r in records)
    vocab = build_vocabulary(c)
    ds = build_dataset(c, vocab, train=True, split="train")
    s = ds[0]
    assert s["gt"].shape == (3, HR, HR) and s["lq"].shape == (3, HR // 4, HR // 4)
    assert torch.equal(s["lq"], quantize(degrade(s["gt"], 4)))
    assert s["tokens"].shape == (8,) and s["length"].item() >= 1
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["gt"].shape == (len(ds), 3, HR, HR) and len(batch["key"]) == len(ds)
    assert ds.skipped == []


def test_cub_details(tmp_path):
    root, _ = make("cub", tmp_path)
    recs = read_records(cfg("cub", root), "train")
    assert [r.class_id for r in recs] == [1, 1]
    assert recs[0].key == "001.Black_footed_Albatross/Black_Footed_Albatross_0001_1"
    assert recs[0].bbox == (10.0, 12.0, 30.0, 20.0)
    assert len(recs[0].captions) == 10
    assert len(read_records(cfg("cub", root, captions_per_image=5), "train")[0].captions) == 5
    with pytest.raises(BadInputError, match="val"):
        read_records(cfg("cub", root), "val")


def test_bbox_crop_as_attngan():
    img = np.zeros((60, 80, 3), dtype=np.uint8)
    # box x=10, y=12, w=30, h=20: r = 22, centre (25, 22) -> rows 0..44, cols 3..47
    assert bbox_crop(img, (10.0, 12.0, 30.0, 20.0)).shape == (44, 44, 3)
    assert bbox_crop(img, (70.0, 50.0, 10.0, 10.0)).shape == (60 - 48, 80 - 68, 3)


def test_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "filenames.pickle"
    bad.write_bytes(pickle.dumps([Evil()], protocol=2))
    with pytest.raises(BadInputError, match="filenames.pickle"):
        read_name_list(bad)
    notlist = tmp_path / "d" / "filenames.pickle"
    notlist.parent.mkdir()
    notlist.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(BadInputError, match="list"):
        read_name_list(notlist)
    ok = tmp_path / "ok.pickle"
    ok.write_bytes(pickle.dumps(["a/b", "c/d"], protocol=2))
    assert read_name_list(ok) == ["a/b", "c/d"]


def test_oxford_split_and_caption_cleaning(tmp_path):
    root, _ = make("oxford102", tmp_path)
    train = read_records(cfg("oxford102", root), "train")
    test = read_records(cfg("oxford102", root), "test")
    assert [r.key for r in train] == ["image_00001", "image_00002", "image_00006"]
    assert [r.key for r in test] == ["image_00003", "image_00004", "image_00005"] + [
        "image_00007",
        "image_00008",
        "image_00009",
    ]
    caps = train[0].captions
    assert len(caps) == 10 and caps[0] == "this flower has pink petals number 0"
    assert caps[3] == caps[2]  # "{}" repeats the previous caption
    assert {r.class_id for r in test} == {1, 2}
    with pytest.raises(TGSRError):
        read_records(cfg("oxford102", root), "val")


def test_celeba_attr_both_formats_keep_case(tmp_path):
    for zero_one in (False, True):
        root = tmp_path / f"celeba{int(zero_one)}"
        make_celeba_attr(root, zero_one=zero_one)
        c = cfg("celeba_attr", root)
        train = read_records(c, "train")
        assert train[0].captions == ["Arched_Eyebrows Smiling Young"]
        assert [r.key for r in train] == ["000001", "000002", "000004"]
        assert read_records(c, "test")[0].captions == ["Arched_Eyebrows Big_Lips Blurry"]
        vocab = build_vocabulary(c)
        assert not vocab.lowercase and "Big_Lips" in vocab and "big_lips" not in vocab
        assert set(vocab.words[2:]) <= set(ATTRS)


def test_celeba_attr_official_partition(tmp_path):
    root = tmp_path / "celeba"
    make_celeba_attr(root)
    write_lines(
        root / "list_eval_partition.txt",
        ["000001.jpg 0", "000002.jpg 1", "000003.jpg 2", "000004.jpg 0"],
    )
    c = cfg("celeba_attr", root)
    assert [r.key for r in read_records(c, "train")] == ["000001", "000004"]
    assert [r.key for r in read_records(c, "val")] == ["000002"]
    assert [r.key for r in read_records(c, "test")] == ["000003"]


def test_vocabulary_uses_training_captions_only(tmp_path):
    root, _ = make("celeba_hq", tmp_path)
    write_lines(root / "text" / "9.txt", ["a unicorn appears"])  # index 9 is in the test part
    vocab = build_vocabulary(cfg("celeba_hq", root))
    assert "unicorn" not in vocab and "blond" in vocab


def test_jsonl_relative_paths_and_split_field(tmp_path):
    manifest = tmp_path / "m" / "data.jsonl"
    write_image(tmp_path / "m" / "a.jpg")
    write_image(tmp_path / "m" / "sub" / "b.jpg", seed=1)
    manifest.write_text(
        '{"image": "a.jpg", "captions": ["one"], "split": "train"}\n'
        '{"image": "sub/b.jpg", "captions": ["two", "three"], "split": "test", "class_id": 7}\n'
    )
    c = cfg("jsonl", manifest)
    (a,) = read_records(c, "train")
    (b,) = read_records(c, "test")
    assert a.image_path == tmp_path / "m" / "a.jpg" and a.key == "a"
    assert b.key == "sub/b" and b.class_id == 7 and b.captions == ["two", "three"]


def test_jsonl_bad_line_names_the_line(tmp_path):
    manifest = tmp_path / "data.jsonl"
    write_image(tmp_path / "a.jpg")
    manifest.write_text('{"image": "a.jpg", "captions": ["one"]}\nnot json\n')
    with pytest.raises(BadInputError, match=r"data.jsonl:2: invalid manifest line"):
        read_records(cfg("jsonl", manifest), "train")
    skipped = []
    assert len(read_records(cfg("jsonl", manifest, skip_bad=True), "train", skipped)) == 1
    assert len(skipped) == 1


def test_read_captions_rules(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("\n  \n!!!\nA Red bird.\n\ufffd\ufffdsecond one\n")
    assert read_captions(p) == ["A Red bird.", "\ufffd\ufffdsecond one"]
    assert read_captions(p, limit=1) == ["A Red bird."]
    p.write_text("\n\n")
    with pytest.raises(BadInputError, match="c.txt: no usable caption"):
        read_captions(p)
    with pytest.raises(BadInputError, match="caption file not found"):
        read_captions(tmp_path / "missing.txt")


def test_training_draws_vary_and_evaluation_is_fixed(tmp_path):
    root, _ = make("cub", tmp_path)
    c = cfg("cub", root)
    vocab = build_vocabulary(c)
    train_ds = build_dataset(c, vocab, train=True)
    torch.manual_seed(0)
    draws = [train_ds[0] for _ in range(12)]
    assert len({d["caption"] for d in draws}) > 1
    assert len({d["gt"].sum().item() for d in draws}) > 1  # random crop / flip
    eval_ds = build_dataset(c, vocab, train=False)
    assert len(eval_ds) == 3
    a, b = eval_ds[1], eval_ds[1]
    assert a["caption"] == b["caption"] == eval_ds.records[1].captions[0]
    assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["tokens"], b["tokens"])
    torch.manual_seed(0)
    again = [train_ds[0] for _ in range(12)]
    assert [d["caption"] for d in again] == [d["caption"] for d in draws]


def test_prepare_image_resize_and_crops():
    img = np.arange(100 * 60 * 3, dtype=np.int64).reshape(100, 60, 3).astype(np.uint8)
    out = prepare_image(img, 32, 76 / 64, None, "x")
    assert out.shape == (32, 32, 3)
    assert prepare_image(img, 32, 76 / 64, (0.0, 0.0), "x").shape == (32, 32, 3)
    # the shorter side goes to int(32 * 76 / 64) = 38, up or down, then the centre 32x32 crop
    ramp = np.broadcast_to(np.linspace(0, 255, 40)[None, :, None], (34, 40, 3)).astype(np.uint8)
    up = prepare_image(ramp, 32, 76 / 64, None, "x")
    assert up.shape == (32, 32, 3)
    resized = resize_shorter_side(ramp, 38)
    assert resized.shape == (38, 45, 3) and np.array_equal(up, resized[3:35, 6:38])
    down = resize_shorter_side(np.zeros((300, 200, 3), np.uint8), 38)
    assert down.shape == (57, 38, 3)
    assert prepare_image(np.zeros((32, 33, 3), np.uint8), 32, 76 / 64, None, "x").shape == (
        32,
        32,
        3,
    )
    assert prepare_image(np.zeros((30, 40, 3), np.uint8), 32, 76 / 64, None, "x").shape == (
        32,
        32,
        3,
    )
    with pytest.raises(BadInputError, match="tiny.png: image 20x30 is below the floor"):
        prepare_image(np.zeros((30, 20, 3), np.uint8), 32, 76 / 64, None, "tiny.png")
    with pytest.raises(BadInputError, match="strip.png: image 400x7 is below the floor"):
        prepare_image(np.zeros((7, 400, 3), np.uint8), 32, 76 / 64, None, "strip.png")


def test_bad_image_error_and_counted_skip(tmp_path):
    root, _ = make("folder", tmp_path)
    (root / "img1.png").write_bytes(b"broken")
    write_image(root / "img2.png", 20, 20, fmt="PNG")  # too small for HR = 32
    c = cfg("folder", root)
    vocab = build_vocabulary(c)
    ds = build_dataset(c, vocab, train=False)
    with pytest.raises(BadInputError, match="img1.png"):
        ds[1]
    c_skip = cfg("folder", root, skip_bad=True)
    ds = build_dataset(c_skip, vocab, train=False)
    keys = [ds[i]["key"] for i in range(len(ds))]
    assert keys == ["img0", "img0", "img0"]
    assert len(ds.skipped) == 2 and "img1.png" in ds.skipped[0] and "img2.png" in ds.skipped[1]


def test_missing_caption_file_error_and_skip(tmp_path):
    root, _ = make("folder", tmp_path)
    (root / "img0.txt").unlink()
    with pytest.raises(BadInputError, match="img0.txt: caption file not found"):
        read_records(cfg("folder", root), "train")
    c = cfg("folder", root, skip_bad=True)
    ds = build_dataset(c, build_vocabulary(c), train=True)
    assert len(ds) == 2 and len(ds.skipped) == 1


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(BadInputError, match="data set not found"):
        read_records(cfg("folder", tmp_path / "nope"), "train")
    with pytest.raises(BadInputError, match="text_c10"):
        read_records(cfg("oxford102", tmp_path), "train")


def test_check_dataset_report(tmp_path):
    root, _ = make("folder", tmp_path)
    (root / "img1.png").write_bytes(b"broken")
    write_image(root / "img2.png", 20, 20, fmt="PNG")
    write_image(root / "img3.png", fmt="PNG")  # no caption file
    c = cfg("folder", root)
    vocab = build_vocabulary(cfg("folder", root, skip_bad=True))
    report = check_dataset(c, "train", vocab=vocab)
    assert report["images"] == 3 and report["captions"] == 6
    assert report["captions_per_image"] == {"min": 2, "mean": 2.0, "max": 2}
    assert len(report["unreadable"]) == 1 and len(report["too_small"]) == 1
    assert len(report["bad_records"]) == 1 and "img3.txt" in report["bad_records"][0]
    assert report["oov_rate"] == 0.0
