"""Tiled SR: blending weights, tiled == untiled away from seams, flat stays flat, exact sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers_pipeline import tiny_components, tiny_config
from tgsr.tiling import tile_starts, tile_weights, tiled_apply


def _nearest(scale):
    return lambda x: F.interpolate(x, scale_factor=scale, mode="nearest")


def _caption_fn(**flags):
    """A real tiny x2 generator (paper layout) with a fixed caption (x2 keeps the test fast):
    ``fn(x, frame=None)``, ``frame`` passed on as the generator's ``coord_frame``."""
    cfg = tiny_config(2, True, "paper", **flags)
    generator, text_encoder, _, _, vocab = tiny_components(cfg, seed=1)
    enc = vocab.encode("a red and cyan striped circle", cfg.data.max_words)
    feats = text_encoder.encode(torch.tensor([enc.ids]), torch.tensor([enc.length]))
    if cfg.generator.tam_coords:  # at init they move the output by ~1e-6: make them count
        with torch.no_grad():
            for stage in generator.stages:
                stage.tam.project.weight[cfg.generator.channels :] *= 3000

    def fn(x, frame=None):
        with torch.no_grad():
            b = x.shape[0]
            return generator(
                x,
                feats.words.expand(b, -1, -1),
                feats.sentence.expand(b, -1),
                feats.token_mask.expand(b, -1),
                coord_frame=frame,
            ).sr

    return fn


@pytest.fixture(scope="module")
def generator_fn():
    return _caption_fn()


# every position code; "coords..." adds x/y channels over the input, which a tile must get in
# the frame of the whole image (with_frame=True) for tiled == untiled
# the same; "tam_coords" gives the TAM queries x/y at every stage (generator.tam_coords)
POSITION_CODES = ["none", "coords", "coords+subpixel", "tam_coords"]


def _code_flags(code: str) -> dict:
    return {"tam_coords": True} if code == "tam_coords" else {"position_code": code}


@pytest.fixture(scope="module", params=POSITION_CODES)
def coded_fn(request):
    return request.param, _caption_fn(**_code_flags(request.param))


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


def test_tiled_equals_untiled_with_margin_over_receptive_field(coded_fn):
    _, fn = coded_fn
    r = _radius(fn, 2)
    torch.manual_seed(3)
    x = torch.rand(1, 3, 72, 66)
    full = fn(x)
    overlap = 4 * (r + 1)  # margin = overlap // 4 > r: every weighted tile value is exact
    tiled = tiled_apply(fn, x, tile=overlap + 16, overlap=overlap, scale=2, with_frame=True)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max() < 1e-5


def test_tiled_equals_untiled_away_from_seams(coded_fn):
    """With a small overlap, outputs agree exactly except in bands around the tile overlaps.
    Coordinate channels: each tile gets its place in the image (``with_frame``); without it
    (the tile as a whole image of its own) the output differs everywhere."""
    code, fn = coded_fn
    r = _radius(fn, 2)
    torch.manual_seed(4)
    n = 72
    x = torch.rand(1, 3, n, n)
    full = fn(x)
    tile, overlap = 40, 8
    tiled = tiled_apply(fn, x, tile=tile, overlap=overlap, scale=2, with_frame=True)
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
    own = tiled_apply(fn, x, tile=tile, overlap=overlap, scale=2)  # each tile its own [-1, 1]
    own_diff = (own - full).abs().amax(1)[0][keep].max()
    assert own_diff > 1e-3 if "coords" in code else own_diff < 1e-5


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


# ----------------------------------------------------------------------------- cheap tiling


def _tiny_generator(scale=2, **flags):
    cfg = tiny_config(scale, True, "paper", **flags)
    generator, text_encoder, _, _, vocab = tiny_components(cfg, seed=1)
    return generator, text_encoder, vocab, cfg


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"activation": "leaky_relu", "subpixel_coords": True, "text_fusion": "concat_mul"},
        {"position_code": "coords"},
    ],
)
def test_computed_receptive_radius_matches_the_impulse_response(generator_fn, flags):
    """The gradient probe on a narrow twin (receptive_radius) against the impulse response of
    the real model (perturb the centre pixel, see which output pixels move)."""
    from tgsr.tiling import receptive_radius

    if not flags:
        generator = generator_fn
        gen = tiny_components(tiny_config(2, True, "paper"), seed=1)[0]
    else:
        gen, text_encoder, vocab, cfg = _tiny_generator(2, **flags)
        enc = vocab.encode("a red and cyan striped circle", cfg.data.max_words)
        feats = text_encoder.encode(torch.tensor([enc.ids]), torch.tensor([enc.length]))

        def generator(x):
            with torch.no_grad():
                return gen(x, feats.words, feats.sentence, feats.token_mask).sr

    measured = _radius(generator, 2)
    computed = receptive_radius(gen)
    assert measured <= computed <= measured + 1  # never below: crops with it are exact


def test_tiles_are_batched_and_crops_equal_blending(coded_fn):
    """Batched tiles (2 images x 4 tiles per call) each get their own frame."""
    _, generator_fn = coded_fn
    torch.manual_seed(5)
    x = torch.rand(2, 3, 50, 46)
    full = generator_fn(x)
    r = _radius(generator_fn, 2)
    calls = []

    def counted(t, frame):
        calls.append(t.shape[0])
        return generator_fn(t, frame)

    kw = dict(tile=2 * r + 10, overlap=2 * r, scale=2, margin=r, blend=False, with_frame=True)
    one = tiled_apply(counted, x, batch_tiles=1, **kw)
    n_tiles = len(calls)
    calls.clear()
    batched = tiled_apply(counted, x, batch_tiles=4, **kw)
    assert len(calls) == -(-n_tiles // 4) and max(calls) == 4 * 2  # 4 tiles x 2 images per call
    assert (one - full).abs().max() < 1e-5 and (batched - full).abs().max() < 1e-5

    def to_u8(t):
        return torch.floor(t.clamp(0, 1) * 255 + 0.5).to(torch.uint8)

    direct = tiled_apply(generator_fn, x, convert=to_u8, **kw)
    assert direct.dtype == torch.uint8 and torch.equal(direct, to_u8(one))


def test_memory_model_is_linear_and_matches_a_direct_count():
    from tgsr.tiling import _LiveBytes, _probe_inputs, peak_activation_bytes

    gen, *_ = _tiny_generator(4, coord_channels=True, word_norm=True, word_adapter="mlp")
    size = 12
    counter = _LiveBytes()
    args = _probe_inputs(gen, size, 2, "cpu", torch.float32, 16)
    with torch.inference_mode(), counter:
        out = gen(*args)
        del out
    estimate = peak_activation_bytes(gen, size, 2)
    assert abs(estimate - counter.peak) / counter.peak < 0.05
    assert peak_activation_bytes(gen, 2 * size, 2) == pytest.approx(4 * estimate, rel=1e-3)
    assert peak_activation_bytes(gen, size, 2, torch.bfloat16) == pytest.approx(estimate / 2, 1e-3)


def test_plan_fits_the_budget_with_little_overhead():
    from tgsr.tiling import plan_tiles

    per_px = 1720.5  # the paper x8 generator in float32 (bytes per output pixel)

    def memory_of(t, n):
        return int(n * (8 * t) ** 2 * per_px)

    plan = plan_tiles(256, 256, 8, memory_of, 2 * 2**30)
    assert plan.tile is not None and memory_of(plan.tile, plan.batch_tiles) <= 2 * 2**30
    assert plan.overlap == 16 and plan.margin == 8
    assert plan.overhead <= 1.3  # issue target for a 2048^2 output
    whole = plan_tiles(64, 64, 8, memory_of, 2 * 2**30)
    assert whole.tile is None and whole.overhead == 1.0
    small = plan_tiles(256, 200, 8, memory_of, 64 * 2**20)
    assert small.tile is not None and small.batch_tiles >= 1
    assert memory_of(small.tile, small.batch_tiles) <= 64 * 2**20


def test_parse_memory():
    from tgsr.tiling import parse_memory

    assert parse_memory("2GiB") == 2 * 2**30 and parse_memory("512MB") == 512 * 10**6
    assert parse_memory("1.5g") == int(1.5 * 2**30) and parse_memory(1000) == 1000
    for bad in ("lots", "-1GB", "0", "5 parsecs"):
        with pytest.raises(ValueError):
            parse_memory(bad)


@pytest.mark.parametrize("code", POSITION_CODES)
def test_pipeline_tiles_under_a_memory_budget_exactly(tmp_path, code):
    """Default tiling (planned from max_memory, overlap from the receptive field) == untiled,
    with coordinate channels too (the pipeline passes each tile's frame; "tam_coords": the
    TAM queries' coordinates at every stage)."""
    from helpers_pipeline import make_pipeline_dir, natural_image
    from tgsr.pipeline import TGSRPipeline

    folder = make_pipeline_dir(tmp_path, scale=4, **_code_flags(code))
    pipe = TGSRPipeline.from_pretrained(folder, dtype="float32")
    img = natural_image(40, 52, seed=3)
    full = pipe(img, "a red and cyan striped circle", tile=0, output_type="pt")
    calls = []
    pipe.generator.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape))
    tiled = pipe(img, "a red and cyan striped circle", max_memory="4MiB", output_type="pt")
    as_np = pipe(img, "a red and cyan striped circle", max_memory="4MiB", output_type="np")
    assert tiled.tiled and len(calls) >= 2 and max(c[-1] for c in calls) < 52
    assert (tiled.images - full.images).abs().max() < 1e-5
    ref = np.floor(full.images[0].permute(1, 2, 0).numpy() * 255 + 0.5)
    assert np.abs(as_np.images[0].astype(np.float64) - ref).max() <= 1
