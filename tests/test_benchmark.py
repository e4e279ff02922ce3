"""ShapeCaps scorers: exact on ground truth, wrong on a wrong fill, near chance for bicubic."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
import torch

from tgsr.data import synthetic as S
from tgsr.data.degradations import degrade, image_to_tensor, imresize, quantize
from tgsr.evaluation import shapecaps as B


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _scenes(split: str, n: int, **kw) -> list[dict]:
    return [S.sample_scene(seed, split, **kw) for seed in range(n)]


def test_chance_level():
    assert len(B.PATTERN_FILLS) == 32 and B.chance_level() == pytest.approx(1 / 32)


def test_ground_truth_scores_100_percent():
    for split in ("test", "compositional"):
        recs = _scenes(split, 150)
        imgs = [S.render(a) for a in recs]
        t = time.perf_counter()
        res = B.pattern_accuracy(imgs, recs)
        print(f"\n{split}: {res['num_objects']} objects scored in {time.perf_counter() - t:.2f} s")
        assert res["pattern_accuracy"] == 1.0 and res["pattern_type_accuracy"] == 1.0
        assert (
            res["pattern_accuracy_one_object"] == 1.0 and res["pattern_accuracy_two_objects"] == 1.0
        )
        for a, img in zip(recs[:40], imgs[:40], strict=True):  # solids too, with solid candidates
            for i, o in enumerate(a["objects"]):
                assert B.classify_fill(img, a, i, include_solid=True) == S.fill_key(o)


def test_input_layouts():
    a = S.sample_scene(4, "test", solid_prob=0.0)
    img = S.render(a)
    key = S.fill_key(a["objects"][0])
    chw = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    for x in (img, img / 255.0, chw, chw.numpy()):
        assert B.classify_fill(x, json.dumps(a), 0) == key
    res = B.pattern_accuracy(chw[None], [json.dumps(a)])
    assert res["pattern_accuracy"] == 1.0


def test_wrong_fill_is_detected():
    rng = random.Random(0)
    for a in _scenes("test", 60, solid_prob=0.0):
        i = rng.randrange(len(a["objects"]))
        old = S.fill_key(a["objects"][i])
        new = rng.choice([k for k in B.PATTERN_FILLS if k != old])
        b = json.loads(json.dumps(a))
        b["objects"][i] = S.set_fill(b["objects"][i], new)
        img = S.render(b)
        assert B.classify_fill(img, a, i) == new != old
        assert B.pattern_accuracy([img], [a])["pattern_accuracy"] < 1.0


def test_bicubic_upsampling_scores_near_chance():
    """The LR leak: bicubic x8 up-sampling of the LR guesses the fill about as often as chance."""
    recs = _scenes("test", 300)
    ups = []
    for a in recs:
        lq = quantize(degrade(image_to_tensor(S.render(a)), 8))
        ups.append(imresize(lq, 8.0).clamp(0, 1))
    res = B.pattern_accuracy(torch.stack(ups), recs)
    print(
        f"\nbicubic fill guess {res['pattern_accuracy']:.3f} (pattern only "
        f"{res['pattern_type_accuracy']:.3f}) vs chance {res['chance']:.3f} "
        f"(1/4 for the pattern alone), {res['num_objects']} objects"
    )
    assert res["pattern_accuracy"] <= 0.08
    assert res["pattern_type_accuracy"] <= 0.4


def test_one_object_edits():
    rng = random.Random(1)
    n = 0
    for a in _scenes("test", 80):
        if not B.can_edit(a, "one"):
            continue
        e = B.make_edit(a, rng, "one")
        changed = [
            S.fill_key(x) != S.fill_key(y) for x, y in zip(a["objects"], e["objects"], strict=True)
        ]
        assert sum(changed) == 1
        assert not any(S.is_held_out(o) for o in e["objects"])
        assert all(o["fill"] == "pattern" for o, c in zip(e["objects"], changed, strict=True) if c)
        assert B.edit_success(S.render(e), a, e) is True
        assert B.edit_success(S.render(a), a, e) is False  # ignored the edit
        if len(a["objects"]) == 2:  # edit applied but the untouched object changed too
            wrong = json.loads(json.dumps(e))
            j = changed.index(False)
            wrong["objects"][j] = S.set_fill(e["objects"][j], ("checks", "black", "white"))
            if S.fill_key(wrong["objects"][j]) != S.fill_key(a["objects"][j]):
                assert B.edit_success(S.render(wrong), a, e) is False
        n += 1
    assert n > 40
    no_pattern = S.sample_scene(0, "test", solid_prob=1.0)
    assert not B.can_edit(no_pattern, "one")
    with pytest.raises(ValueError):
        B.make_edit(no_pattern, 0, "one")


def test_swaps_and_batched_success():
    recs = [a for a in _scenes("test", 200, two_object_prob=1.0) if B.can_edit(a, "swap")]
    assert len(recs) > 30
    edits = [B.make_edit(a, 0, "swap") for a in recs]
    for a, e in zip(recs, edits, strict=True):
        assert S.fill_key(e["objects"][0]) == S.fill_key(a["objects"][1])
        assert S.fill_key(e["objects"][1]) == S.fill_key(a["objects"][0])
    good = np.stack([S.render(e) for e in edits])
    assert B.swap_success(good, recs, edits).all()
    stale = np.stack([S.render(a) for a in recs])
    assert not B.swap_success(stale, recs, edits).any()
    half = [S.render(B.make_edit(a, 0, "one")) for a in recs]  # only one object follows
    assert not B.swap_success(half, recs, edits).any()
    one = S.sample_scene(2, "test", two_object_prob=0.0)
    assert not B.can_edit(one, "swap")
