import pytest
import torch

from tgsr.config import GeneratorConfig, TextEncoderConfig
from tgsr.models import TextAttention, TextEncoder, build_generator

D = 16


def _text(batch: int = 2, t: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 3, 4, 1][:batch])
    tokens = torch.randint(2, 30, (batch, t), generator=g)
    tokens[torch.arange(t)[None] >= lengths[:, None]] = 0
    return tokens, lengths


def _encoder():
    torch.manual_seed(0)
    return TextEncoder(TextEncoderConfig(8, D // 2, dropout=0.0), 30).eval()


def _gen(scale=8, arch="paper", **kw):
    torch.manual_seed(0)
    kw.setdefault("channels", 8)
    return build_generator(GeneratorConfig(arch=arch, **kw), D, scale).eval()


@pytest.mark.parametrize("arch", ["paper", "released"])
@pytest.mark.parametrize("scale", [4, 8, 16])
def test_shapes(arch, scale):
    gen = _gen(scale, arch, refine_input="highpass", refine_res_blocks=2)
    tokens, lengths = _text()
    feats = _encoder().encode(tokens, lengths)
    out = gen(torch.rand(2, 3, 8, 8), feats.words, feats.sentence, feats.token_mask)
    n = {4: 2, 8: 3, 16: 4}[scale]
    assert out.sr.shape == (2, 3, 8 * scale, 8 * scale)
    assert [c.shape[-1] for c in out.coarse] == [8 * 2**k for k in range(1, n + 1)]
    assert [f.shape[-1] for f in out.fine] == [8 * 2**k for k in range(1, n + 1)]
    assert out.sr is out.fine[-1] and len(out.attn) == n
    half = 2 if arch == "released" else 1  # released: TAM before each upsampling
    assert [a.shape for a in out.attn] == [
        (2, 6, 8 * 2**k // half, 8 * 2**k // half) for k in range(1, n + 1)
    ]
    for a in out.attn:
        torch.testing.assert_close(a[0].sum(0), torch.ones_like(a[0, 0]))
        assert torch.all(a[1, 3:] == 0)


@pytest.mark.parametrize("arch, c2f", [("paper", True), ("paper", False), ("released", True)])
def test_sr_only_gives_the_same_sr_and_maps(arch, c2f):
    """``sr_only`` (what inference asks for) skips the image heads ``sr`` does not need; ``sr``
    and the word maps are bit-identical to a full forward."""
    flags = {"position_code": "coords+subpixel"} if arch == "paper" else {}
    gen = _gen(8, arch, coarse_to_fine=c2f, **flags)
    tokens, lengths = _text()
    feats = _encoder().encode(tokens, lengths)
    lq = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = gen(lq, feats.words, feats.sentence, feats.token_mask)
        fast = gen(lq, feats.words, feats.sentence, feats.token_mask, sr_only=True)
    assert torch.equal(full.sr, fast.sr)
    assert len(full.attn) == len(fast.attn) == 3
    assert all(torch.equal(a, b) for a, b in zip(full.attn, fast.attn, strict=True))
    if arch == "paper":  # the heads it skipped: no coarse images, only the last fine one
        assert fast.coarse == [] and len(fast.fine) == 1 and len(full.fine) == 3
        assert fast.sr is fast.fine[-1]


@pytest.mark.parametrize("fusion", ["concat", "concat_mul"])
def test_eval_fuses_without_the_concatenation_and_agrees_with_training(fusion, monkeypatch):
    """In eval mode the paper stages convolve each part with its slice of the fuse weights
    (no concatenated copy); the output equals the training path's up to float rounding."""
    from tgsr.models.blocks import conv_of_cat

    conv = torch.nn.Conv2d(12, 5, 3, 1, 1)
    parts = [torch.randn(2, c, 7, 6) for c in (4, 4, 4)]
    with torch.no_grad():
        torch.testing.assert_close(
            conv_of_cat(conv, parts), conv(torch.cat(parts, 1)), atol=1e-5, rtol=1e-5
        )
        with pytest.raises(ValueError, match="parts have 8 channels"):
            conv_of_cat(conv, parts[:2])
    gen = _gen(8, text_fusion=fusion, position_code="coords+subpixel")
    tokens, lengths = _text()
    feats = _encoder().encode(tokens, lengths)
    lq = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    import tgsr.models.paper_generator as paper

    calls = []
    monkeypatch.setattr(
        paper, "conv_of_cat", lambda c, p: calls.append(len(p)) or conv_of_cat(c, p)
    )
    with torch.no_grad():
        gen.train()
        trained = gen(lq, feats.words, feats.sentence, feats.token_mask).sr
        assert calls == []  # training convolves the concatenation, as measured
        gen.eval()
        served = gen(lq, feats.words, feats.sentence, feats.token_mask, sr_only=True).sr
    parts = 3 if fusion == "concat_mul" else 2
    assert calls == [parts] * 3 + [2] * 3  # the global branch's three fuses, then the refine's
    torch.testing.assert_close(served, trained, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["paper", "released"])
def test_flags_off_build_nothing(arch):
    gen = (
        _gen(8, arch, use_text=False, coarse_to_fine=False)
        if arch == "paper"
        else _gen(8, arch, use_text=False)
    )
    assert not any(isinstance(m, TextAttention) for m in gen.modules())
    lq = torch.rand(2, 3, 8, 8)
    out = gen(lq)
    assert out.attn == []
    tokens, lengths = _text()
    feats = _encoder().encode(tokens, lengths)
    assert torch.equal(
        gen(lq, feats.words, feats.sentence, feats.token_mask).sr, out.sr
    )  # text ignored
    if arch == "paper":
        assert not hasattr(gen, "refine_stages") and not hasattr(gen, "refine_head")
        assert all(c is f for c, f in zip(out.coarse, out.fine, strict=True))


@pytest.mark.parametrize("arch", ["paper", "released"])
def test_text_changes_output_padding_does_not(arch):
    gen, enc = _gen(8, arch, text_fusion="concat"), _encoder()
    lq = torch.rand(2, 3, 8, 8)
    tokens, lengths = _text()

    def run(tok):
        f = enc.encode(tok, lengths)
        return gen(lq, f.words, f.sentence, f.token_mask).sr

    base = run(tokens)
    padded = tokens.clone()
    padded[1, 3:] = torch.tensor([5, 6, 7])  # garbage in padding slots
    assert torch.equal(run(padded), base)
    edited = tokens.clone()
    edited[1, 1] = (edited[1, 1] + 1) % 28 + 2  # change one real word
    diff = (run(edited) - base).abs().amax(dim=(1, 2, 3))
    assert diff[1] > 1e-5 and diff[0] == 0


@pytest.mark.parametrize("arch", ["paper", "released"])
def test_mixed_lengths_equal_each_alone(arch):
    gen, enc = _gen(4, arch), _encoder()
    lq = torch.rand(2, 3, 8, 8)
    feats = enc.encode(*_text())
    out = gen(lq, feats.words, feats.sentence, feats.token_mask)
    one = gen(lq[1:], feats.words[1:, :, :3], None, feats.token_mask[1:, :3])
    torch.testing.assert_close(out.sr[1], one.sr[0], atol=1e-5, rtol=1e-5)


def test_paper_options_and_backward():
    gen = _gen(
        8, "paper", activation="leaky_relu", position_code="coords", text_fusion="concat_mul"
    ).train()
    feats = _encoder().encode(*_text())
    out = gen(torch.rand(2, 3, 8, 8), feats.words, None, feats.token_mask)
    sum(x.mean() for x in out.fine + out.coarse).backward()
    assert all(p.grad is not None for p in gen.parameters())


def test_image_residual_starts_near_bicubic():
    gen = _gen(8, "paper", use_text=False, coarse_to_fine=False)
    lq = torch.rand(2, 3, 8, 8)
    bicubic = torch.nn.functional.interpolate(
        lq, size=(64, 64), mode="bicubic", align_corners=False
    )
    assert (gen(lq).sr - bicubic).abs().mean() < 0.05
    assert not torch.equal(gen(lq).sr, bicubic)


@pytest.mark.parametrize("arch", ["paper", "released"])
def test_bf16_autocast_channels_last(arch):
    gen = _gen(8, arch).train().to(memory_format=torch.channels_last)
    feats = _encoder().encode(*_text())
    lq = torch.rand(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)

    def loss_of(out):
        return sum(((x.float() - 0.5) ** 2).mean() for x in out.fine + out.coarse)

    ref = gen(lq, feats.words, feats.sentence, feats.token_mask)  # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gen(lq, feats.words, feats.sentence, feats.token_mask)
        loss = loss_of(out)
    loss.backward()
    assert out.sr.shape == (2, 3, 64, 64)
    # bf16 keeps ~3 significant digits: the output and the loss stay close to fp32's
    # (measured: max |diff| 3e-5 paper, 0.032 released; loss within 2e-4 relative)
    assert (out.sr.float() - ref.sr).abs().max() < 0.06
    assert loss.item() == pytest.approx(loss_of(ref).item(), rel=1e-2)


def test_text_required_when_use_text():
    with pytest.raises(ValueError, match="uses text"):
        _gen(4)(torch.rand(1, 3, 8, 8))


def test_released_parameter_counts_match_checkpoint():
    """docs/paper_vs_code.md R4: global branch 908,656 − CA net 102,800 (not built), refine
    282,656."""
    cfg = GeneratorConfig(arch="released", channels=32, num_res_blocks=2, refine_res_blocks=6)
    gen = build_generator(cfg, 256, 8)
    refine = sum(p.numel() for n, p in gen.named_parameters() if n.startswith(("convin", "refine")))
    total = sum(p.numel() for p in gen.parameters())
    assert (total - refine, refine) == (805_856, 282_656)


# ----------------------------------------------------------------------------- coordinate frame


def _old_coord_channels(x):
    """A copy of ``coord_channels`` before ``coord_frame`` existed (issue 12)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy]).unsqueeze(0).expand(b, -1, -1, -1)


@pytest.mark.parametrize(
    "arch,code", [("paper", "coords"), ("paper", "coords+subpixel"), ("released", "coords")]
)
def test_no_coord_frame_is_byte_identical_to_the_old_coordinates(arch, code, monkeypatch):
    from tgsr.models import blocks, generator

    for shape, dtype in [((2, 3, 7, 11), torch.float32), ((1, 3, 1, 5), torch.float32),
                         ((1, 3, 16, 9), torch.bfloat16), ((3, 3, 33, 2), torch.float64)]:  # fmt: skip
        x = torch.rand(shape).to(dtype)
        assert torch.equal(blocks.coord_channels(x), _old_coord_channels(x))
    gen = _gen(4, arch, position_code=code)
    feats = _encoder().encode(*_text())
    lq = torch.rand(2, 3, 9, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        new = gen(lq, feats.words, feats.sentence, feats.token_mask)
        monkeypatch.setattr(
            generator, "coord_channels", lambda x, frame=None: _old_coord_channels(x)
        )
        old = gen(lq, feats.words, feats.sentence, feats.token_mask)
    assert torch.equal(new.sr, old.sr) and all(map(torch.equal, new.coarse, old.coarse))


def test_coord_frame_gives_the_coordinates_of_the_whole_image():
    from tgsr.models.blocks import coord_channels

    whole = coord_channels(torch.rand(1, 3, 20, 30))  # (1, 2, 20, 30)
    assert (coord_channels(torch.rand(2, 3, 20, 30), (0, 0, 20, 30)) - whole).abs().max() < 1e-6
    frames = torch.tensor([[5, 9, 20, 30], [13, 0, 20, 30]])  # one row per sample
    tiles = coord_channels(torch.rand(2, 3, 7, 11), frames)
    assert tiles.shape == (2, 2, 7, 11)
    assert (tiles[0] - whole[0, :, 5:12, 9:20]).abs().max() < 1e-6
    assert (tiles[1] - whole[0, :, 13:20, 0:11]).abs().max() < 1e-6
    with pytest.raises(ValueError, match="rows"):
        coord_channels(torch.rand(3, 3, 7, 11), frames)
