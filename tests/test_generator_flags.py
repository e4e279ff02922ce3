"""The generator additions used by the CPU quickstart: sub-pixel position channels, word
standardisation + adapter, sentence FiLM (each a config flag, off in the paper preset)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tgsr.config import load_config
from tgsr.models.blocks import subpixel_channels
from tgsr.models.generator import Generator
from tgsr.models.serialization import load_generator, save_generator


def quickstart_generator(seed: int = 0, **over) -> Generator:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(load_config("quickstart").generator, channels=8, **over)
    return Generator(scale=8, word_dim=16, **dataclasses.asdict(cfg))


def text(b: int = 2, t: int = 6, lengths=(6, 3), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, 16, t, generator=g)
    mask = torch.arange(t)[None] >= torch.tensor(lengths)[:, None]
    words = words.masked_fill(mask[:, None], 0.0)
    return words, torch.randn(b, 16, generator=g), mask


def test_subpixel_channels_encode_the_position_inside_each_lr_pixel():
    x = torch.zeros(1, 1, 16, 24)
    enc = subpixel_channels(x, 4)
    assert enc.shape == (1, 8, 16, 24)
    assert torch.allclose(enc[..., :, :4], enc[..., :, 4:8])  # periodic with the LR grid
    assert torch.allclose(enc[..., :4, :], enc[..., 4:8, :])
    assert not torch.allclose(enc[..., :, 0], enc[..., :, 1])  # distinct inside an LR pixel
    assert subpixel_channels(x, 1).shape[1] == 0


def test_quickstart_generator_shapes_and_padding_invariance():
    g = quickstart_generator().eval()
    lq = torch.rand(2, 3, 4, 4)
    words, sentence, mask = text()
    out = g(lq, words, sentence, mask)
    assert out.sr.shape == (2, 3, 32, 32) and len(out.attn) == 3
    noisy = words.clone()
    noisy[1, :, 3:] = torch.randn(16, 3)  # change only padded positions
    again = g(lq, noisy, sentence, mask)
    assert torch.allclose(out.sr, again.sr, atol=1e-6)


def test_changing_one_word_or_the_sentence_changes_the_output():
    g = quickstart_generator(sentence_cond=True).eval()
    lq = torch.rand(2, 3, 4, 4)
    words, sentence, mask = text()
    base = g(lq, words, sentence, mask).sr
    other = words.clone()
    other[0, :, 1] = torch.randn(16)
    assert not torch.allclose(base[0], g(lq, other, sentence, mask).sr[0])
    assert not torch.allclose(base, g(lq, words, sentence + 1.0, mask).sr)


def test_sentence_conditioned_generator_needs_the_sentence():
    g = quickstart_generator(sentence_cond=True)
    words, _, mask = text()
    with pytest.raises(ValueError, match="pass sentence"):
        g(torch.rand(2, 3, 4, 4), words, None, mask)


@pytest.mark.parametrize("sentence_cond", [False, True])
def test_empty_caption_output_ignores_every_word_and_sentence_value(sentence_cond):
    """With no real word, whatever sits in the padded word slots and the sentence feature
    changes nothing: the TAMs attend to nothing (maps exactly 0) and FiLM gets a zero sentence."""
    g = quickstart_generator(sentence_cond=sentence_cond).eval()
    lq = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    words, sentence, mask = text(lengths=(0, 0))
    assert torch.all(words == 0)
    out = g(lq, words, torch.zeros_like(sentence), mask)
    garbage = torch.randn(words.shape, generator=torch.Generator().manual_seed(4)) * 10
    again = g(lq, garbage, sentence * 5, mask)
    assert torch.equal(out.sr, again.sr)
    assert all(torch.all(a == 0) for a in out.attn + again.attn)
    other = g(lq.flip(-1), garbage, sentence, mask)  # the image still reaches the output
    assert not torch.allclose(other.sr, out.sr)


def test_word_statistics_are_learned_in_training_and_frozen_at_inference():
    g = quickstart_generator().train()
    words, sentence, mask = text()
    before = g.word_norm.norm.running_mean.clone()
    g(torch.rand(2, 3, 4, 4), words * 3 + 1, sentence, mask)
    assert not torch.equal(before, g.word_norm.norm.running_mean)
    g.eval()
    frozen = g.word_norm.norm.running_mean.clone()
    g(torch.rand(2, 3, 4, 4), words, sentence, mask)
    assert torch.equal(frozen, g.word_norm.norm.running_mean)


def test_flags_survive_save_and_load(tmp_path):
    g = quickstart_generator(sentence_cond=True).eval()
    save_generator(g, tmp_path / "g")
    h = load_generator(tmp_path / "g")
    assert h.config == g.config and h.config["sentence_cond"] and h.config["subpixel_coords"]
    lq = torch.rand(2, 3, 4, 4)
    words, sentence, mask = text()
    assert torch.equal(g(lq, words, sentence, mask).sr, h(lq, words, sentence, mask).sr)


def test_paper_preset_keeps_the_additions_off():
    cfg = load_config("ablations/tgsr").generator
    assert not (cfg.subpixel_coords or cfg.word_norm or cfg.sentence_cond)
    assert cfg.word_adapter == "none" and cfg.text_fusion == "concat"
