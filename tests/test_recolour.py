"""Caption-consistent recolouring (``data.recolour``, ``tgsr.data.recolour``): which pixels a
colour word names, how far the target moves, and that the LR input keeps the original colours."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from test_real_data import make_tiny_cub
from tgsr.colours import COLOUR_LAB, COLOUR_RGB, rgb_to_lab
from tgsr.config import ConfigError, load_config
from tgsr.data.degradations import degrade, image_to_tensor, quantize
from tgsr.data.loader import build_dataset, build_vocabulary
from tgsr.data.recolour import colour_mask, recolour, recolour_to
from tgsr.evaluation.metrics import psnr

PATCHES = ["black", "white", "grey", "red", "blue", "yellow", "green", "orange"]


def _patchwork(size: int = 8) -> tuple[np.ndarray, dict[str, tuple[slice, slice]]]:
    """A 2x4 grid of ``size``-pixel swatches of the colours in PATCHES (uint8 HxWx3)."""
    img = np.zeros((2 * size, 4 * size, 3), np.uint8)
    where = {}
    for k, name in enumerate(PATCHES):
        sl = (
            slice((k // 4) * size, (k // 4 + 1) * size),
            slice((k % 4) * size, (k % 4 + 1) * size),
        )
        img[sl] = COLOUR_RGB[name]
        where[name] = sl
    return img, where


@pytest.mark.parametrize("colour", PATCHES)
def test_colour_mask_names_its_own_swatch(colour):
    img, where = _patchwork()
    mask = colour_mask(image_to_tensor(img), colour)
    for name, sl in where.items():
        inside = float(mask[sl].mean())
        if name == colour:
            assert inside > 0.9, (name, inside)
        else:
            assert inside < 0.1, (colour, name, inside)


def _bird(seed: int = 0) -> np.ndarray:
    """64x64 grey noise background with a black 24x32 'wing' (values 0..30)."""
    rng = np.random.default_rng(seed)
    img = np.repeat(rng.integers(90, 200, (64, 64, 1), dtype=np.uint8), 3, axis=2)
    img[16:40, 16:48] = rng.integers(0, 30, (24, 32, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("psnr_db", [35.0, 40.0])
def test_recolour_moves_the_named_pixels_within_the_lr_budget(psnr_db):
    img = _bird()
    out = recolour(img, "a bird with black wings", {"yellow"}, random.Random(0), 8, psnr_db)
    assert out is not None
    target, caption, old, new, mask = out
    assert mask.shape == (64, 64) and float(mask[16:40, 16:48].mean()) > float(mask[:8].mean())
    assert (caption, old, new) == ("a bird with yellow wings", "black", "yellow")
    before, after = image_to_tensor(img), image_to_tensor(target)
    # the downsampled target stays within the budget of the LR image (8-bit rounding aside)
    lr = quantize(degrade(before, 8))
    got = float(psnr(degrade(after, 8).clamp(0, 1)[None], lr[None], 1.0))
    assert psnr_db - 0.7 <= got <= psnr_db + 1.5
    # the wing moved toward yellow in Lab, the background did not move
    lab0, lab1 = rgb_to_lab(before), rgb_to_lab(after)
    shift = (lab1 - lab0)[:, 16:40, 16:48].flatten(1).mean(1)
    towards = torch.tensor(COLOUR_LAB["yellow"]) - lab0[:, 16:40, 16:48].flatten(1).mean(1)
    assert float(torch.dot(shift[1:], towards[1:])) > 0
    assert float((after - before)[:, 16:40, 16:48].abs().mean()) * 255 > 1.0
    assert torch.equal(after[:, :8], before[:, :8])


def test_a_tighter_budget_moves_less():
    img = _bird()
    moves = []
    for psnr_db in (30.0, 40.0):
        target = recolour(img, "black wings", {"red"}, random.Random(0), 8, psnr_db)[0]
        moves.append(np.abs(target.astype(int) - img.astype(int)).mean())
    assert moves[0] > 2 * moves[1] > 0


def test_recolour_needs_a_named_colour_that_is_present_and_a_known_new_one():
    img = _bird()
    rng = random.Random(0)
    assert recolour(img, "a small bird", {"red"}, rng, 8, 40.0) is None  # no colour word
    assert recolour(img, "a purple bird", {"red"}, rng, 8, 40.0) is None  # no purple pixels
    assert recolour(img, "a black bird", set(), rng, 8, 40.0) is None  # no known new colour
    # repeatable from the generator's seed, and the new colour varies with it
    known = set(COLOUR_RGB)
    a = recolour(img, "a black bird", known, random.Random(5), 8, 40.0)
    b = recolour(img, "a black bird", known, random.Random(5), 8, 40.0)
    assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4] and torch.equal(a[4], b[4])
    news = {recolour(img, "a black bird", known, random.Random(s), 8, 40.0)[3] for s in range(20)}
    assert len(news) > 3 and "black" not in news


def test_recolour_config_is_checked():
    with pytest.raises(ConfigError, match="recolour"):
        load_config("cub_x8", ["data.recolour=1.5"])
    with pytest.raises(ConfigError, match="ShapeCaps"):
        load_config("quickstart", ["data.recolour=0.5"])


def test_recoloured_training_samples_keep_the_lr_and_change_target_and_caption(tmp_path):
    make_tiny_cub(tmp_path)
    sets = [f"data.root={tmp_path}", "data.hr_size=32", "data.cache=false"]
    plain = load_config("cub_x8", sets)
    recol = load_config("cub_x8", [*sets, "data.recolour=1.0"])
    vocab = build_vocabulary(plain.data)
    ds_plain = build_dataset(plain.data, vocab, train=True)
    ds_recol = build_dataset(recol.data, vocab, train=True)
    changed = 0
    for i in range(len(ds_plain)):
        torch.manual_seed(7 + i)
        a = ds_plain[i]
        torch.manual_seed(7 + i)
        b = ds_recol[i]
        assert torch.equal(a["lq"], b["lq"])  # the LR input keeps the original colours
        if b["caption"] != a["caption"]:
            changed += 1
            assert not torch.equal(a["gt"], b["gt"])
            assert [w for w in a["caption"].split() if w not in b["caption"].split()]
        else:
            assert torch.equal(a["gt"], b["gt"])
    assert changed >= len(ds_plain) // 2  # noise images hold some of every caption colour
    # evaluation never recolours
    ev_a = build_dataset(plain.data, vocab, train=False)[0]
    ev_b = build_dataset(recol.data, vocab, train=False)[0]
    assert torch.equal(ev_a["gt"], ev_b["gt"]) and ev_a["caption"] == ev_b["caption"]


def test_max_cover_moves_only_the_clearest_pixels_and_moves_them_further():
    before = image_to_tensor(_bird())  # the black wing is 768 of 4096 pixels (19 %)
    full = recolour_to(before, "black", "yellow", 8, 40.0, 1.0)[0]
    part = recolour_to(before, "black", "yellow", 8, 40.0, 0.05)[0]
    moved_full = (full != before).any(0)
    moved_part = (part != before).any(0)
    assert float(moved_full.float().mean()) > 0.15
    assert 0 < float(moved_part.float().mean()) <= 0.05 + 1 / 4096
    assert bool((moved_part <= moved_full).all())  # a subset of the wing
    # the kept pixels are the wing's closest to the black swatch (Lab (0, 0, 0))
    dist = rgb_to_lab(before).norm(dim=0)
    assert float(dist[moved_part].max()) <= float(dist[moved_full & ~moved_part].min()) + 1e-3
    # the same LR budget spent on fewer pixels moves each of them further
    assert float((part - before).abs().max()) > 1.5 * float((full - before).abs().max())


def test_the_pixel_weight_map_marks_recoloured_pixels_only(tmp_path):
    make_tiny_cub(tmp_path)
    sets = [f"data.root={tmp_path}", "data.hr_size=32", "data.cache=false", "data.recolour=0.5"]
    vocab = build_vocabulary(load_config("cub_x8", sets).data)
    plain = build_dataset(load_config("cub_x8", sets).data, vocab, train=True)
    assert "weight" not in plain[0]  # weight 1: no map, the batches stay as they were
    cfg = load_config("cub_x8", [*sets, "data.recolour_loss_weight=5"])
    ds = build_dataset(cfg.data, vocab, train=True)
    seen = {"recoloured": 0, "kept": 0}
    for i in range(4 * len(ds)):
        torch.manual_seed(i)
        s = ds[i % len(ds)]
        w = s["weight"]
        assert w.shape == (1, 32, 32) and float(w.min()) >= 1.0 and float(w.max()) <= 5.0
        if s["caption"] in ds.records[i % len(ds)].captions:
            seen["kept"] += 1
            assert bool((w == 1).all())
        else:
            seen["recoloured"] += 1
            assert float(w.max()) > 1.0
    assert seen["recoloured"] > 0 and seen["kept"] > 0
    assert not ds.train or build_dataset(cfg.data, vocab, train=False)[0].get("weight") is None
