"""ShapeCaps: determinism, LR indistinguishability, geometry, splits, captions, CLI."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
import torch

from tgsr.config import DataConfig, SyntheticConfig
from tgsr.data import synthetic as S
from tgsr.data.degradations import degrade, image_to_tensor, quantize
from tgsr.text import tokenize


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention
    yield
    torch.set_num_threads(n)


def _lq(img: np.ndarray) -> torch.Tensor:
    return quantize(degrade(image_to_tensor(img), 8))


def _with_fill(attrs: dict, index: int, key: tuple) -> dict:
    out = json.loads(json.dumps(attrs))
    out["objects"][index] = S.set_fill(out["objects"][index], key)
    return out


PATTERN_FILLS = [(p, a, b) for p in S.PATTERNS for pr in S.COLOR_PAIRS for a, b in (pr, pr[::-1])]


def test_same_seed_same_scene_and_pixels():
    for split in S.SPLITS:
        a, b = S.sample_scene(7, split), S.sample_scene(7, split)
        assert a == b
        assert np.array_equal(S.render(a), S.render(b))
        json.dumps(a)  # JSON-serialisable
    assert S.sample_scene(7, "train") != S.sample_scene(8, "train")
    assert S.sample_scene(7, "train")["objects"] != S.sample_scene(7, "test")["objects"]


def test_render_sizes_and_errors():
    a = S.sample_scene(3, "test")
    for size in (32, 48, 64, 128):
        img = S.render(a, size)
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
    for bad in (40, 16):
        with pytest.raises(ValueError):
            S.render(a, bad)
    with pytest.raises(ValueError):
        S.sample_scene(0, "holdout")


def test_geometry_non_overlapping_and_left_right():
    for seed in range(300):
        a = S.sample_scene(seed, "train", two_object_prob=0.7)
        objs = a["objects"]
        for o in objs:
            x0, y0, x1, y1 = o["bbox"]
            assert x1 - x0 == y1 - y0 == o["size"]
            assert S.SIZE_RANGE[0] <= o["size"] <= S.SIZE_RANGE[1]
            assert 0 <= x0 and 0 <= y0 and x1 <= 64 and y1 <= 64
            assert o["size_word"] in (None, "small", "big")
        if len(objs) == 2:
            left, right = objs
            assert (left["position"], right["position"]) == ("left", "right")
            assert (
                (left["bbox"][0] + left["bbox"][2]) / 2
                < 32
                < (right["bbox"][0] + right["bbox"][2]) / 2
            )
            covered = [S.object_sdf(o) > -0.5 for o in objs]  # pixels the shape touches
            assert not (covered[0] & covered[1]).any()
        else:
            assert objs[0]["position"] is None


def test_patterns_aligned_to_pixel_grid():
    for size in (64, 128):
        period = size // 16
        for key in PATTERN_FILLS:
            f = S.fill_image(key, size)
            assert np.array_equal(f, np.roll(f, period, axis=0))
            assert np.array_equal(f, np.roll(f, period, axis=1))
            assert not np.array_equal(
                f, np.roll(f, period // 2, axis=0 if key[0] != "vstripes" else 1)
            )
            assert np.allclose(f.mean((0, 1)), S.GREY, atol=1 / 255)  # same grey mean
    # inside the shape the GT shows the global pattern: same pixels as the full-image fill
    for seed in range(40):
        a = S.sample_scene(seed, "test", solid_prob=0.0)
        img = S.render(a).astype(np.float64) / 255
        for o in a["objects"]:
            full = S.pattern_amplitude(o) == 1.0
            assert full.sum() >= 16
            assert np.abs(img[full] - S.fill_image(S.fill_key(o))[full]).max() < 1e-9


def test_dots_distinct_from_checks():
    dots, checks = S.fill_image(("dots", "red", "cyan")), S.fill_image(("checks", "red", "cyan"))
    on = np.all(dots == dots[0, 0], axis=-1).mean()  # share of pixels with the "on" colour
    assert on == pytest.approx(0.25) and np.abs(dots - checks).mean() > 0.1


def test_lr_indistinguishable_hr_distinct():
    """Scenes that differ only in one object's pattern/colour pair: LR nearly equal, HR not."""
    lr_mad, lr_max, hr_mad = [], [], []
    rng = random.Random(0)
    for seed in range(60):
        a = S.sample_scene(seed, "test", solid_prob=0.0)
        i = rng.randrange(len(a["objects"]))
        old = S.fill_key(a["objects"][i])
        b = _with_fill(a, i, rng.choice([k for k in PATTERN_FILLS if k != old]))
        ha, hb = S.render(a), S.render(b)
        d_lr = (_lq(ha) - _lq(hb)).abs() * 255
        lr_mad.append(d_lr.mean().item())
        lr_max.append(d_lr.max().item())
        hr_mad.append(np.abs(ha.astype(np.float64) - hb).mean())
    lr, hr = float(np.mean(lr_mad)), float(np.mean(hr_mad))
    print(
        f"\nLR (x8) MAD {lr:.3f} levels (max pixel {max(lr_max):.0f}, mean max {np.mean(lr_max):.2f})"
        f" vs HR MAD {hr:.2f} levels: ratio {hr / lr:.0f}x"
    )
    assert lr < 0.3 and max(lr_max) <= 8
    assert hr > 4.0 and hr / lr > 20


def test_compositional_split_disjoint_from_train():
    held = {(s, p, frozenset(c)) for s, p, c in S.HELD_OUT}
    assert len(held) == len(S.HELD_OUT)
    seen = {}
    for split in ("train", "val", "test"):
        seen[split] = {
            S.combo(o)
            for seed in range(1500)
            for o in S.sample_scene(seed, split)["objects"]
            if o["fill"] == "pattern"
        }
        assert not seen[split] & held
    comp = {
        S.combo(o) for seed in range(500) for o in S.sample_scene(seed, "compositional")["objects"]
    }
    assert comp == held  # every held-out combination is tested, nothing else
    assert not comp & seen["train"]
    # each shape, pattern and pair on its own is still trained
    assert {c[0] for c in seen["train"]} == set(S.SHAPES)
    assert {c[1] for c in seen["train"]} == set(S.PATTERNS)
    assert {c[2] for c in seen["train"]} == {frozenset(p) for p in S.COLOR_PAIRS}


def test_parse_recovers_attributes():
    for seed in range(600):
        a = S.sample_scene(seed, "train", two_object_prob=0.6)
        cap = S.make_caption(a, random.Random(seed))
        parsed = S.parse_caption(cap)["objects"]
        assert len(parsed) == len(a["objects"]), cap
        if len(parsed) == 2:  # captions name the objects in any order: match by position
            parsed = sorted(parsed, key=lambda o: o.get("position", ""))
        for p, o in zip(parsed, a["objects"], strict=True):
            assert p["shape"] == o["shape"], cap
            assert p.get("position") == o["position"], cap
            assert S.set_fill(o, S.fill_key(o)) == o
            rebuilt = {"fill": p["fill"], "pattern": p.get("pattern"), "colors": p.get("colors")}
            rebuilt["color"] = p.get("color")
            assert S.fill_key(rebuilt) == S.fill_key(o), cap
            if "size_word" in p:
                assert p["size_word"] == o["size_word"], cap


def test_parse_user_phrasings():
    p = S.parse_caption(
        "A big round shape with blue and yellow checks on the left and a small red-cyan triangle with vertical stripes on the right."
    )
    left, right = p["objects"]
    assert left == {"shape": "circle", "position": "left", "size_word": "big", "fill": "pattern",
                    "pattern": "checks", "colors": ["blue", "yellow"]}  # fmt: skip
    assert right["pattern"] == "vstripes" and right["colors"] == ["red", "cyan"]
    p = S.parse_caption(
        "on the right is a plain orange box and on the left sits a dotted white-black disc"
    )
    right, left = p["objects"]
    assert right == {"shape": "square", "position": "right", "fill": "solid", "color": "orange"}
    assert (
        left["position"] == "left"
        and left["pattern"] == "dots"
        and left["colors"] == ["white", "black"]
    )
    assert S.parse_caption("striped red and cyan")["objects"] == [
        {"fill": "pattern", "colors": ["red", "cyan"]}
    ]


def test_captions_fit_and_vocabulary_closed():
    vocab = S.build_vocabulary()
    words = S.caption_words()
    assert words <= set(vocab.words)
    lengths = {1: [], 2: []}
    for seed in range(1500):
        a = S.sample_scene(seed, "test")
        cap = S.make_caption(a, random.Random(seed))
        toks = tokenize(cap)
        assert set(toks) <= words, cap
        lengths[len(a["objects"])].append(len(toks))
    over = np.mean([n > S.MAX_CAPTION_WORDS for n in lengths[1] + lengths[2]])
    print(f"\ncaption words: one object mean {np.mean(lengths[1]):.1f} max {max(lengths[1])}; "
          f"two objects mean {np.mean(lengths[2]):.1f} max {max(lengths[2])}; over 18: {over:.3f}; "
          f"vocab {len(vocab)}")  # fmt: skip
    assert over == 0.0
    phrasings = {S.make_caption(S.sample_scene(1, "test"), random.Random(s)) for s in range(30)}
    assert len(phrasings) > 10  # not one fixed template


def test_dataset_samples():
    cfg = DataConfig(synthetic=SyntheticConfig(num=None, eval_num=6))
    vocab = S.build_vocabulary()
    train = S.SyntheticDataset(cfg, vocab, train=True)
    assert len(train) == S.ENDLESS_LEN and train.split == "train"
    s = train[5]
    assert (
        s["gt"].shape == (3, 64, 64) and s["lq"].shape == (3, 8, 8) and s["tokens"].shape == (18,)
    )
    attrs = json.loads(s["attributes"])
    assert np.array_equal(
        S.render(attrs), (s["gt"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    )
    assert len({train[5]["caption"] for _ in range(8)}) > 1  # a new caption per draw
    assert torch.equal(train[5]["gt"], s["gt"])
    ev = S.SyntheticDataset(cfg, vocab, train=False)
    assert len(ev) == 6 and ev.split == "test"
    assert ev[2]["caption"] == ev[2]["caption"] == S.eval_caption(json.loads(ev[2]["attributes"]))
    comp = S.SyntheticDataset(cfg, vocab, train=False, split="compositional")
    assert all(S.is_held_out(o) for o in json.loads(comp[0]["attributes"])["objects"])
    batch = next(iter(torch.utils.data.DataLoader(ev, batch_size=3)))
    assert batch["gt"].shape == (3, 3, 64, 64) and len(batch["attributes"]) == 3


def test_train_two_object_prob_changes_the_train_split_only():
    def objects(syn: SyntheticConfig, train: bool) -> list[int]:
        cfg = DataConfig(synthetic=syn)
        ds = S.SyntheticDataset(cfg, S.build_vocabulary(), train=train)
        return [len(ds.scene(i)["objects"]) for i in range(200)]

    plain = SyntheticConfig(num=None, eval_num=200)
    more = SyntheticConfig(num=None, eval_num=200, train_two_object_prob=0.9)
    two = [n.count(2) / len(n) for n in (objects(plain, True), objects(more, True))]
    assert two[0] < 0.65 and two[1] > 0.8  # 0.5 and 0.9 of 200 draws
    assert objects(plain, False) == objects(more, False)  # the test set is the benchmark's
    with pytest.raises(ValueError, match="train_two_object_prob"):
        SyntheticConfig(train_two_object_prob=1.5).validate()


def test_generation_speed():
    t = time.perf_counter()
    for seed in range(300):
        S.render(S.sample_scene(seed, "train"))
    per = (time.perf_counter() - t) / 300 * 1e3
    print(f"\nscene + render at 64^2: {per:.3f} ms")
    assert per < 20  # generous: shared CI machines


def test_cli_same_arguments_same_bytes(tmp_path):
    from typer.testing import CliRunner

    from tgsr.cli.app import app

    runner = CliRunner()
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        args = ["data", "synth", "--out", str(out), "--num", "12", "--seed", "1", "--split", "test"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert len(files) == 12 * 3 + 1
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    lines = (outs[0] / "attributes.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    key = rec["key"]
    caps = (outs[0] / "images" / f"{key}.txt").read_text().splitlines()
    assert caps == rec["captions"] and len(caps) == 5
    from PIL import Image

    img = np.asarray(Image.open(outs[0] / "images" / f"{key}.png"))
    assert np.array_equal(img, S.render(rec["attributes"]))
    lq = np.asarray(Image.open(outs[0] / "lq_x8" / f"{key}.png"))
    assert lq.shape == (8, 8, 3)
    res = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "c"), "--split", "nope"])
    assert res.exit_code != 0


def test_train_caption_forms_balanced_keeps_the_long_forms_in_the_train_split_only():
    """The default caption draw redraws a sentence form that does not fit the word limit, so
    position-first two-object captions are rare (3 %); "balanced" redraws the object phrases
    instead. Every balanced caption still fits, parses back to its scene, and the test captions
    do not change."""
    from tgsr.data.synthetic_text import (
        MAX_CAPTION_WORDS,
        caption_form,
        make_caption,
        parse_caption,
    )

    shares = {}
    for forms in ("natural", "balanced"):
        hits = n = 0
        for seed in range(600):
            attrs = S.sample_scene(S.scene_seed(0, seed), "train", size=64)
            if len(attrs["objects"]) != 2:
                continue
            caption = make_caption(attrs, random.Random(seed), forms)
            assert len(tokenize(caption)) <= MAX_CAPTION_WORDS
            parsed = parse_caption(caption)["objects"]
            side = {o["position"]: S.fill_key(o) for o in parsed}
            assert side == {o["position"]: S.fill_key(o) for o in attrs["objects"]}, caption
            n += 1
            hits += caption_form(caption) == "position_before"
        shares[forms] = hits / n
    assert shares["natural"] < 0.06 and shares["balanced"] > 2 * shares["natural"], shares

    def captions(forms: str, train: bool) -> list[str]:
        syn = SyntheticConfig(num=None, eval_num=40, train_caption_forms=forms)
        ds = S.SyntheticDataset(DataConfig(synthetic=syn), S.build_vocabulary(), train=train)
        return [ds[i]["caption"] for i in range(40)]

    assert captions("natural", False) == captions("balanced", False)
    assert captions("natural", True) != captions("balanced", True)
    with pytest.raises(ValueError, match="forms"):
        make_caption(S.sample_scene(0, "train", size=64), 0, "sometimes")
