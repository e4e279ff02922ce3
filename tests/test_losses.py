import pytest
import torch

from tgsr.config import (
    DAMSMConfig,
    DiscriminatorConfig,
    GeneratorConfig,
    ImageEncoderConfig,
    LossConfig,
    TextEncoderConfig,
)
from tgsr.data.degradations import build_pyramids, degrade
from tgsr.losses import LossSuite, tar_loss, tar_weight
from tgsr.models import LightImageEncoder, TextEncoder, build_generator
from tgsr.models.discriminator import Discriminator

D = 16
LIGHT = ImageEncoderConfig(kind="light", feature_dim=D, light_channels=4, light_input_size=32)


def _setup(use_text=True, coarse_to_fine=True, **loss):
    torch.manual_seed(0)
    gcfg = GeneratorConfig(channels=8, use_text=use_text, coarse_to_fine=coarse_to_fine)
    gen = build_generator(gcfg, D, 4)
    text_enc = TextEncoder(TextEncoderConfig(8, D // 2, 0.0), 20).eval()
    tokens = torch.randint(2, 20, (3, 5))
    lengths = torch.tensor([5, 2, 3])
    tokens[torch.arange(5)[None] >= lengths[:, None]] = 0
    text = text_enc.encode(tokens, lengths)
    gt = torch.rand(3, 3, 32, 32)
    lq = degrade(gt, 4).clamp(0, 1)
    batch = {"gt": gt, "lq": lq, "class_id": torch.tensor([0, 1, 2])}
    gt_levels, low_levels = build_pyramids(gt, 4, 2.0)
    cfg = LossConfig(**{"l2": 1.0, "fine_l2": 0.0, "tar": 0.0, "tic": 0.0, "cgan": 0.0, **loss})
    suite = LossSuite(cfg, gcfg, DAMSMConfig())
    out = gen(lq, text.words, text.sentence, text.token_mask)
    return suite, gen, out, batch, gt_levels, low_levels, text


def test_only_active_terms_computed():
    suite, _, out, batch, gts, lows, text = _setup(use_text=False, coarse_to_fine=False)
    assert suite.terms == ["l2"] and not suite.uses_discriminator and not suite.uses_image_encoder
    total, logs = suite.generator_loss(out, batch, gts, None, None)  # nothing else needed
    assert set(logs) == {"l2", "g_total"} and total.requires_grad


def test_l2_targets():
    suite, _, out, batch, gts, lows, text = _setup()
    suite_fine = LossSuite(LossConfig(l2=1.0, fine_l2=1.0, tar=0, tic=0, cgan=0), GeneratorConfig())
    _, logs = suite_fine.generator_loss(out, batch, gts, lows, text)
    expect_l2 = sum(torch.mean((c - t) ** 2) for c, t in zip(out.coarse, lows, strict=True))
    expect_fine = sum(torch.mean((f - t) ** 2) for f, t in zip(out.fine, gts, strict=True))
    assert logs["l2"] == pytest.approx(expect_l2.item(), rel=1e-5)
    assert logs["fine_l2"] == pytest.approx(expect_fine.item(), rel=1e-5)
    with pytest.raises(ValueError, match="lowpass"):
        suite.generator_loss(out, batch, gts, None, text)


def test_full_suite_g_and_d_steps():
    suite, gen, out, batch, gts, lows, text = _setup(tar=1.0, tic=0.5, cgan=0.1, lr_consistency=0.1)
    assert suite.terms == ["l2", "tar", "tic", "cgan", "lr_consistency"]
    enc = LightImageEncoder(LIGHT).eval().requires_grad_(False)
    disc = Discriminator(DiscriminatorConfig(channels=4), 32, 4, D)
    total, logs = suite.generator_loss(out, batch, gts, lows, text, enc, disc)
    assert set(logs) == {"l2", "tar", "tic", "cgan", "lr_consistency", "g_total"}
    total.backward()
    assert all(p.grad is not None for p in gen.parameters())
    disc.zero_grad()
    d_total, d_logs = suite.discriminator_loss(out, batch, text, disc)
    d_total.backward()
    assert all(p.grad is not None for p in disc.parameters())
    assert {"d_real_u", "d_real_c", "d_fake_u", "d_fake_c", "d_wrong_c", "d_total"} <= set(d_logs)
    with pytest.raises(ValueError, match="image encoder"):
        suite.generator_loss(out, batch, gts, lows, text, None, disc)


def test_unconditional_d_loss():
    suite, _, out, batch, gts, lows, text = _setup(use_text=False, coarse_to_fine=False, cgan=0.1)
    disc = Discriminator(DiscriminatorConfig(channels=4, conditional=False), 32, 4, D)
    d_total, logs = suite.discriminator_loss(out, batch, None, disc)
    assert "d_wrong_c" not in logs and "d_real_c" not in logs
    # without conditional logits: real_u + fake_u (averaged over the judged images)
    assert logs["d_total"] == pytest.approx(logs["d_real_u"] + logs["d_fake_u"], rel=1e-6)
    assert d_total.item() == pytest.approx(logs["d_total"], rel=1e-6)
    _, g_logs = suite.generator_loss(out, batch, gts, None, None, None, disc)
    assert "cgan" in g_logs


def test_suite_rejects_impossible_terms():
    with pytest.raises(ValueError, match="use_text"):
        LossSuite(LossConfig(tic=0.5), GeneratorConfig(use_text=False))
    with pytest.raises(ValueError, match="refine"):
        LossSuite(LossConfig(tar=1.0), GeneratorConfig(coarse_to_fine=False))


def test_lr_consistency_zero_for_gt():
    suite, _, out, batch, gts, lows, text = _setup(lr_consistency=1.0)
    out.sr = batch["gt"]
    batch["lq"] = degrade(batch["gt"], 4)
    _, logs = suite.generator_loss(out, batch, gts, lows, text)
    assert logs["lr_consistency"] < 1e-10


def test_tar_weight_top5():
    attn = torch.zeros(2, 8, 4, 4)
    mask = torch.tensor([[False] * 7 + [True], [False, False] + [True] * 6])
    attn[0, :7] = torch.softmax(torch.randn(7, 4, 4), dim=0)
    attn[1, 0, :, :2] = 1.0  # word 0 on the left half
    attn[1, 1, :, 2:] = 1.0
    w = tar_weight(attn, mask, (8, 8), "top5")
    assert w.shape == (2, 1, 8, 8)
    torch.testing.assert_close(w.mean(dim=(2, 3)), torch.ones(2, 1))
    torch.testing.assert_close(w[1], torch.ones(1, 8, 8))  # 2 words averaged: uniform
    attn[1, 1] = 0.0
    attn[1, 0] = 1.0 / 16
    attn[1, 0, 0, 0] = 0.5
    w = tar_weight(attn, mask, (4, 4), "top5")
    assert w[1, 0, 0, 0] > w[1, 0, 3, 3]
    empty = tar_weight(torch.zeros(1, 8, 4, 4), torch.ones(1, 8, dtype=torch.bool), (8, 8))
    torch.testing.assert_close(empty, torch.ones(1, 1, 8, 8))


def test_tar_weight_max_mode_and_uniform_equals_l2():
    attn = torch.softmax(torch.randn(2, 5, 4, 4), dim=1)
    w = tar_weight(attn, None, (8, 8), "max")
    torch.testing.assert_close(w[:, :, ::2, ::2], 5 * attn.amax(1, keepdim=True))
    uniform = torch.full((2, 5, 4, 4), 0.2)
    out, gt = [torch.rand(2, 3, 8, 8)], [torch.rand(2, 3, 8, 8)]
    loss = tar_loss(out, gt, [uniform], None, "top5")
    torch.testing.assert_close(loss, torch.mean((out[0] - gt[0]) ** 2))


def test_generator_loss_under_bf16_autocast():
    suite, gen, _, batch, gts, lows, text = _setup(tar=1.0)
    ref = gen(batch["lq"], text.words, text.sentence, text.token_mask)
    ref_total, _ = suite.generator_loss(ref, batch, gts, lows, text)  # fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gen(batch["lq"], text.words, text.sentence, text.token_mask)
        total, logs = suite.generator_loss(out, batch, gts, lows, text)
    assert total.dtype == torch.float32
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-2)  # measured: 2e-6
    total.backward()


def test_pixel_weight_of_the_l2_terms():
    from tgsr.losses.terms import pyramid_l2, tar_loss

    g = torch.Generator().manual_seed(0)
    outs = [torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 16, 16, generator=g)]
    gts = [torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 16, 16, generator=g)]
    ones = torch.ones(2, 1, 16, 16)
    assert torch.allclose(pyramid_l2(outs, gts, ones), pyramid_l2(outs, gts))
    # weight on one corner: only that corner's error counts more
    w = ones.clone()
    w[:, :, :8, :8] = 3.0
    bumped = [o.clone() for o in outs]
    bumped[1][:, :, :8, :8] += 0.1
    gain_w = pyramid_l2(bumped, gts, w) - pyramid_l2(outs, gts, w)
    gain = pyramid_l2(bumped, gts) - pyramid_l2(outs, gts)
    assert float(gain_w) > 2.5 * float(gain) > 0
    attn = [torch.rand(2, 4, 8, 8, generator=g), torch.rand(2, 4, 16, 16, generator=g)]
    assert torch.allclose(
        tar_loss(outs, gts, attn, None, weight=ones), tar_loss(outs, gts, attn, None)
    )
    assert float(tar_loss(outs, gts, attn, None, weight=2 * ones)) > float(
        tar_loss(outs, gts, attn, None)
    )
