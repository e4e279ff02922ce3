"""loss.balance = image and the TIC / cGAN schedule (loss.semantic_start / semantic_ramp)."""

import json

import pytest
import torch

from tgsr.config import (
    ConfigError,
    DAMSMConfig,
    DiscriminatorConfig,
    GeneratorConfig,
    ImageEncoderConfig,
    LossConfig,
    TextEncoderConfig,
)
from tgsr.data.degradations import build_pyramids, degrade
from tgsr.losses import LossSuite
from tgsr.models import LightImageEncoder, TextEncoder, build_generator
from tgsr.models.discriminator import Discriminator

D = 16
LIGHT = ImageEncoderConfig(kind="light", feature_dim=D, light_channels=4, light_input_size=32)


def _setup(**loss):
    torch.manual_seed(0)
    gcfg = GeneratorConfig(channels=8)
    gen = build_generator(gcfg, D, 4)
    text_enc = TextEncoder(TextEncoderConfig(8, D // 2, 0.0), 20).eval()
    tokens = torch.randint(2, 20, (3, 5))
    lengths = torch.tensor([5, 2, 3])
    tokens[torch.arange(5)[None] >= lengths[:, None]] = 0
    text = text_enc.encode(tokens, lengths)
    gt = torch.rand(3, 3, 32, 32)
    batch = {"gt": gt, "lq": degrade(gt, 4).clamp(0, 1), "class_id": torch.tensor([0, 1, 2])}
    gts, lows = build_pyramids(gt, 4, 2.0)
    base = {"l2": 1.0, "fine_l2": 1.0, "tar": 1.0, "tic": 0.0, "cgan": 0.0}
    suite = LossSuite(LossConfig(**{**base, **loss}), gcfg, DAMSMConfig())
    enc = LightImageEncoder(LIGHT).eval().requires_grad_(False)
    torch.manual_seed(1)
    disc = Discriminator(DiscriminatorConfig(channels=4), 32, 4, D)
    return suite, gen, batch, gts, lows, text, enc, disc


def _image_grads(suite, gen, batch, gts, lows, text, enc, disc, step=None):
    """(logs, gradients of the total at the judged images, gradients of the parameters)."""
    torch.manual_seed(2)
    out = gen(batch["lq"], text.words, text.sentence, text.token_mask)
    judged = suite.judged_images(out)
    total, logs = suite.generator_loss(out, batch, gts, lows, text, enc, disc, step=step)
    params = list(gen.parameters())
    grads = torch.autograd.grad(total, judged + params, allow_unused=True)
    pairs = zip(judged + params, grads, strict=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in pairs]
    return logs, grads[: len(judged)], grads[len(judged) :]


def test_balance_is_a_no_op_without_semantic_terms():
    """The quickstart default (λ_TIC = λ_cGAN = 0): identical losses and gradients."""
    plain = _image_grads(*_setup(balance="sum"))
    balanced = _image_grads(*_setup(balance="image", semantic_start=10))
    assert plain[0] == balanced[0]
    assert all(torch.equal(a, b) for a, b in zip(plain[2], balanced[2], strict=True))


def test_balance_bounds_each_semantic_gradient_at_the_image():
    ratio = 0.05
    terms = {"tic": 0.5, "cgan": 0.1}
    pixel = _image_grads(*_setup())[1]
    for name, weight in terms.items():
        logs, grads, _ = _image_grads(
            *_setup(balance="image", balance_ratio=ratio, **{name: weight})
        )
        summed, sum_grads, _ = _image_grads(*_setup(balance="sum", **{name: weight}))
        assert logs[name] == pytest.approx(summed[name], rel=1e-5)  # the same term, logged raw
        assert logs["g_total"] == pytest.approx(summed["g_total"], rel=1e-5)
        assert 0 < logs[f"{name}_gain"] < 1  # unbalanced, the semantic gradient is far larger
        for g, gp, gs in zip(grads, pixel, sum_grads, strict=True):
            semantic = (g - gp).flatten(1).norm(dim=1)
            bound = ratio * gp.flatten(1).norm(dim=1)
            assert torch.all(semantic <= bound * (1 + 1e-4))
            # ... and it is the summed objective's semantic gradient, only shorter, per sample
            cos = torch.nn.functional.cosine_similarity((g - gp).flatten(1), (gs - gp).flatten(1))
            assert torch.all(cos > 0.999)


def test_balance_with_a_large_ratio_equals_the_sum():
    kw = {"tic": 0.5, "cgan": 0.1}
    _, _, balanced = _image_grads(*_setup(balance="image", balance_ratio=1e9, **kw))
    _, _, summed = _image_grads(*_setup(balance="sum", **kw))
    for a, b in zip(balanced, summed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)


def test_semantic_schedule():
    suite = _setup(tic=0.5, cgan=0.1, semantic_start=100, semantic_ramp=50)[0]
    factors = [suite.semantic_factor(s) for s in (None, 1, 100, 101, 125, 150, 151, 10**6)]
    assert factors == [1.0, 0.0, 0.0, 0.02, 0.5, 1.0, 1.0, 1.0]
    assert not suite.trains_discriminator(100) and suite.trains_discriminator(101)
    setup = _setup(tic=0.5, cgan=0.1, semantic_start=100, semantic_ramp=50)
    early = _image_grads(*setup, step=50)[0]
    assert "tic" not in early and "cgan" not in early  # not even computed
    late = _image_grads(*setup, step=125)[0]
    full = _image_grads(*setup, step=None)[0]
    pixel = sum(late[k] for k in ("l2", "fine_l2", "tar"))
    assert late["g_total"] == pytest.approx(pixel + 0.5 * (0.5 * late["tic"] + 0.1 * late["cgan"]))
    assert full["g_total"] == pytest.approx(pixel + 0.5 * late["tic"] + 0.1 * late["cgan"])


def test_balance_config_validation():
    with pytest.raises(ConfigError, match="balance_ratio"):
        LossConfig(balance_ratio=0).validate()
    with pytest.raises(ConfigError, match="semantic_start"):
        LossConfig(semantic_start=-1).validate()


def test_fit_schedules_the_semantic_terms_and_calls_on_eval(tmp_path):
    from tgsr.config import load_config
    from tgsr.training.damsm import train_damsm
    from tgsr.training.trainer import fit

    tiny = [
        "data.hr_size=32", "data.scale=4", "data.num_workers=0",
        "damsm.text_encoder.embedding_dim=16", "damsm.text_encoder.hidden_dim=16",
        "damsm.image_encoder.feature_dim=32", "damsm.image_encoder.light_channels=8",
        "damsm_train.batch_size=4", "damsm_train.mixed_precision=no", "damsm_train.max_steps=2",
        "generator.channels=8", "train.batch_size=4", "train.mixed_precision=no",
        "train.channels_last=false", "train.log_every=1", "train.image_every=0",
    ]  # fmt: skip
    torch.manual_seed(0)
    damsm = train_damsm(
        load_config("quickstart", tiny), tmp_path / "damsm", progress=False, cpu=True
    )
    sets = ["loss.tic=0.5", "loss.cgan=0.1", "loss.semantic_start=2", "train.max_steps=5",
            "train.eval_every=2", f"damsm.path={damsm}"]  # fmt: skip
    calls = []

    def on_eval(step, generator, text_encoder):
        calls.append((step, generator.training, text_encoder is not None))

    result = fit(load_config("quickstart", tiny + sets), tmp_path / "run", progress=False,
                 cpu=True, on_eval=on_eval)  # fmt: skip
    assert calls == [(2, False, True), (4, False, True), (5, False, True)]  # + after the last
    hist = json.loads((result.run_dir / "train_summary.json").read_text())["history"]
    assert [s for s, _ in hist["train/tic"]] == [3, 4, 5]  # off for semantic_start steps
    assert [s for s, _ in hist["train/d_total"]] == [3, 4, 5]  # and so is the discriminator
    assert all(0 < g <= 1 for _, g in hist["train/tic_gain"] + hist["train/cgan_gain"])
    assert len(hist["perf/g_grad_norm"]) == 5
