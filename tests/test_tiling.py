"""Tiled SR: blending weights, tiled == untiled away from seams, flat stays flat, exact sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers_pipeline import tiny_components, tiny_config
from tgsr.tiling import tile_starts, tile_weights, tiled_apply


def _nearest(scale):
    return lambda x: F.interpolate(x, scale_factor=scale, mode="nearest")


@pytest.fixture(scope="module")
def generator_fn():
    """A real tiny x2 generator (paper layout) with a fixed caption (x2 keeps the test fast)."""
    cfg = tiny_config(2, True, "paper")
    generator, text_encoder, _, _, vocab = tiny_components(cfg, seed=1)
    enc = vocab.encode("a red and cyan striped circle", cfg.data.max_words)
    feats = text_encoder.encode(torch.tensor([enc.ids]), torch.tensor([enc.length]))

    def fn(x):
        with torch.no_grad():
            b = x.shape[0]
            return generator(
                x,
                feats.words.expand(b, -1, -1),
                feats.sentence.expand(b, -1),
                feats.token_mask.expand(b, -1),
            ).sr

    return fn


def _radius(fn, scale: int, size: int = 40) -> int:
    """Receptive-field radius in LR pixels, measured by perturbing the centre pixel."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, size, size)
    y = x.clone()
    y[..., size // 2, size // 2] += 0.5
    changed = (fn(x) - fn(y)).abs().amax(dim=(0, 1)) > 0  # (H, W)
    rows = torch.nonzero(changed.any(1)).flatten()
    cols = torch.nonzero(changed.any(0)).flatten()
    c = size // 2
    extent = max(c - rows.min() // scale, rows.max() // scale - c, c - cols.min() // scale,
                 cols.max() // scale - c)  # fmt: skip
    assert 0 < extent < size // 2 - 1, "probe too small for this receptive field"
    return int(extent)


def test_tile_starts_cover_and_are_flush():
    for length, tile, overlap in [(100, 32, 8), (33, 32, 8), (32, 32, 8), (10, 32, 4), (97, 20, 7)]:
        starts = tile_starts(length, tile, overlap)
        size = min(tile, length)
        assert starts[0] == 0 and starts[-1] + size == length
        for a, b in zip(starts, starts[1:], strict=False):
            assert a + size - b >= overlap  # at least the requested overlap


@pytest.mark.parametrize(
    "length,tile,overlap,scale", [(100, 32, 8, 4), (50, 16, 12, 2), (37, 20, 9, 8)]
)
def test_weights_sum_to_one(length, tile, overlap, scale):
    starts, windows = tile_weights(length, tile, overlap, scale, margin=overlap // 4)
    total = torch.zeros(length * scale, dtype=torch.float64)
    for s, w in zip(starts, windows, strict=True):
        assert w.min() >= 0
        total[s * scale : (s + tile) * scale] += w.double()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


@pytest.mark.parametrize("h,w,scale", [(37, 53, 4), (20, 33, 8), (9, 70, 2)])
def test_output_is_exactly_scale_times_input(h, w, scale):
    x = torch.rand(2, 3, h, w)
    seen = []

    def fn(t):
        seen.append(tuple(t.shape[-2:]))
        up = _nearest(scale)(t)
        return up, t[:, :1]  # a second output at x1, like attention maps at another size

    sr, side = tiled_apply(fn, x, tile=16, overlap=6, scale=scale)
    assert sr.shape == (2, 3, h * scale, w * scale) and side.shape == (2, 1, h, w)
    assert torch.allclose(sr, _nearest(scale)(x), atol=1e-6)  # a pointwise fn is reproduced
    assert torch.allclose(side, x[:, :1], atol=1e-6)
    assert max(max(s) for s in seen) <= 16  # memory: never more than one tile at a time


def test_flat_image_stays_flat_with_any_blending():
    x = torch.full((1, 3, 45, 61), 0.37)
    y = tiled_apply(_nearest(4), x, tile=16, overlap=8, scale=4)
    assert (y - 0.37).abs().max() < 1e-6


def test_tiled_equals_untiled_with_margin_over_receptive_field(generator_fn):
    r = _radius(generator_fn, 2)
    torch.manual_seed(3)
    x = torch.rand(1, 3, 72, 66)
    full = generator_fn(x)
    overlap = 4 * (r + 1)  # margin = overlap // 4 > r: every weighted tile value is exact
    tiled = tiled_apply(generator_fn, x, tile=overlap + 16, overlap=overlap, scale=2)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max() < 1e-5


def test_tiled_equals_untiled_away_from_seams(generator_fn):
    """With a small overlap, outputs agree exactly except in bands around the tile overlaps."""
    r = _radius(generator_fn, 2)
    torch.manual_seed(4)
    n = 72
    x = torch.rand(1, 3, n, n)
    full = generator_fn(x)
    tile, overlap = 40, 8
    tiled = tiled_apply(generator_fn, x, tile=tile, overlap=overlap, scale=2)
    starts = tile_starts(n, tile, overlap)
    assert len(starts) == 2
    near = torch.zeros(n, dtype=torch.bool)
    for prev, s in zip(starts, starts[1:], strict=False):  # seam [s, prev end) +- the field
        near[max(0, s - r) : min(n, prev + tile + r)] = True
    far = (~near).repeat_interleave(2)  # (H*2,)
    keep = far[:, None] & far[None, :]
    assert keep.float().mean() > 0.2
    diff = (tiled - full).abs().amax(1)[0]  # (H, W)
    assert diff[keep].max() < 1e-5
    assert diff.max() < 0.1  # near the seams it is only blended, not broken


def test_flat_image_stays_flat_across_tile_borders(generator_fn):
    """A flat image: the output interior is flat, tiled as untiled (no seam pattern)."""
    """The 6x6/2 deconvolutions make the output of a flat input periodic on the x2 grid, so
    "flat" means: constant after averaging each 2x2 output cell (away from the image border)."""
    r = _radius(generator_fn, 2)
    n = 60
    x = torch.full((1, 3, n, n), 0.6)
    full = generator_fn(x)
    tiled = tiled_apply(generator_fn, x, tile=2 * (r + 1) + 24, overlap=2 * (r + 1), scale=2)
    inner = slice(2 * (r + 1), 2 * (n - r - 1))  # away from the image border (zero padding)
    for out in (full, tiled):
        cells = F.avg_pool2d(out[..., inner, inner], 2)  # (1, 3, h, w) per LR pixel
        spread = cells.amax(dim=(2, 3)) - cells.amin(dim=(2, 3))
        assert spread.max() < 1e-4


def test_bad_arguments():
    x = torch.rand(1, 3, 40, 40)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(_nearest(2), x, tile=16, overlap=16, scale=2)
    with pytest.raises(ValueError, match="margin"):
        tiled_apply(_nearest(2), x, tile=16, overlap=4, scale=2, margin=2)
    with pytest.raises(ValueError, match="expected x4"):
        tiled_apply(_nearest(2), x, tile=16, overlap=8, scale=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tiled_apply(_nearest(2), x[0], tile=16, overlap=8, scale=2)
