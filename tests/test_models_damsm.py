import pytest
import torch

from tgsr.config import ImageEncoderConfig, TextEncoderConfig
from tgsr.models import (
    DAMSM,
    LightImageEncoder,
    TextEncoder,
    build_image_encoder,
    damsm_loss,
    r_precision,
    tim,
    word_scores,
)

COLOURS = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.1, 0.2, 1.0),
    "yellow": (1.0, 0.9, 0.1),
}
WORDS = ["<pad>", "<unk>", "a", "this", "is", "square", "left", "right", *COLOURS]
IDX = {w: i for i, w in enumerate(WORDS)}


def _colour_batch(n: int, seed: int, size: int = 32):
    """Tiny learnable set: a coloured square on the left or right; captions of mixed lengths."""
    g = torch.Generator().manual_seed(seed)
    names = list(COLOURS)
    images = torch.full((n, 3, size, size), 0.5)
    tokens = torch.zeros(n, 6, dtype=torch.int64)
    lengths = torch.zeros(n, dtype=torch.int64)
    colour_ids = torch.randint(0, 4, (n,), generator=g)
    sides = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        colour = names[colour_ids[i]]
        x0 = 2 if sides[i] == 0 else size // 2 + 2
        images[i, :, 8:24, x0 : x0 + size // 2 - 4] = torch.tensor(COLOURS[colour])[:, None, None]
        words = [colour, "square", "left" if sides[i] == 0 else "right"]
        if int(torch.randint(0, 2, (1,), generator=g)):
            words = ["this", "is", "a", *words]
        tokens[i, : len(words)] = torch.tensor([IDX[w] for w in words])
        lengths[i] = len(words)
    return images, tokens, lengths, colour_ids * 2 + sides


def _light(input_size: int) -> ImageEncoderConfig:
    return ImageEncoderConfig(
        kind="light", feature_dim=32, light_channels=8, light_input_size=input_size
    )


def _small_encoders(seed=0):
    torch.manual_seed(seed)
    text = TextEncoder(TextEncoderConfig(16, 16, dropout=0.0), len(WORDS))
    image = LightImageEncoder(_light(32))
    return text, image


def test_light_encoder_shapes_and_resize():
    enc = LightImageEncoder(_light(64))
    regions, glob = enc(torch.rand(2, 3, 64, 64))
    assert regions.shape == (2, 32, 8, 8) and glob.shape == (2, 32)
    regions, _ = enc(torch.rand(2, 3, 128, 128))
    assert regions.shape == (2, 32, 8, 8)
    enc = build_image_encoder(ImageEncoderConfig(kind="light", feature_dim=32, light_channels=8))
    assert isinstance(enc, LightImageEncoder)


def test_word_scores_mixed_lengths_match_pairs_alone():
    text, image = _small_encoders()
    text.eval()
    images, tokens, lengths, _ = _colour_batch(6, seed=1)
    feats = text.encode(tokens, lengths)
    regions, _ = image(images)
    scores = word_scores(regions, feats.words, feats.token_mask, 4.0, 5.0)
    assert scores.shape == (6, 6)
    for i in range(6):
        for j in range(6):
            n = int(lengths[j])
            alone = word_scores(
                regions[i : i + 1],
                feats.words[j : j + 1, :, :n],
                torch.zeros(1, n, dtype=torch.bool),
                4.0,
                5.0,
            )
            torch.testing.assert_close(scores[i, j], alone[0, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tim(regions, feats.words, feats.token_mask), scores.diagonal())


def test_empty_caption_scores_finite():
    regions = torch.randn(2, 8, 4, 4, requires_grad=True)
    words = torch.randn(2, 8, 3)
    mask = torch.tensor([[False, True, True], [True, True, True]])
    words = words.masked_fill(mask[:, None], 0.0)
    scores = word_scores(regions, words, mask, 4.0, 5.0)
    assert torch.isfinite(scores).all() and torch.all(scores[:, 1] == 0)
    # the empty caption's column is a constant 0: no gradient (and no NaN) flows from it
    (empty,) = torch.autograd.grad(scores[:, 1].sum(), regions, retain_graph=True)
    assert torch.all(empty == 0)
    (real,) = torch.autograd.grad(scores[:, 0].sum(), regions)
    assert torch.isfinite(real).all() and real.abs().amax() > 0
    score, attn = tim(regions, words, mask, return_attn=True)
    assert attn.shape == (2, 3, 4, 4) and torch.all(attn[0, 1:] == 0)


def test_same_class_negatives_masked():
    torch.manual_seed(0)
    regions, glob = torch.randn(4, 8, 4, 4), torch.randn(4, 8)
    words, sentence = torch.randn(4, 8, 3), torch.randn(4, 8)
    mask = torch.zeros(4, 3, dtype=torch.bool)
    loss_all_same, parts = damsm_loss(
        regions, glob, words, sentence, mask, torch.zeros(4, dtype=torch.long)
    )
    assert float(loss_all_same) == pytest.approx(0.0, abs=1e-6)  # no negatives left
    loss_distinct, _ = damsm_loss(regions, glob, words, sentence, mask, torch.arange(4))
    assert float(loss_distinct) > 0.1


def test_damsm_learns_and_tim_separates_pairs():
    text, image = _small_encoders()
    model = DAMSM(text, image)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(50):
        images, tokens, lengths, cls = _colour_batch(16, seed=100 + step)
        loss, _ = model.loss(images, tokens, lengths, cls)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses
    model.eval()
    images, tokens, lengths, cls = _colour_batch(24, seed=999)
    with torch.no_grad():
        feats = text.encode(tokens, lengths)
        regions, glob = image(images)
        scores = word_scores(regions, feats.words, feats.token_mask, 4.0, 5.0)
    differ = cls[:, None] != cls[None, :]
    assert scores.diagonal().mean() > scores[differ].mean() + 0.5
    rp = r_precision(glob, feats.sentence, num_candidates=10, seed=0)
    assert rp.num_candidates == 10 and rp.note == "" and rp.value > 0.3


def test_r_precision_few_captions_and_seeded():
    torch.manual_seed(0)
    g, s = torch.randn(5, 8), torch.randn(5, 8)
    with pytest.warns(UserWarning, match="only 5 captions"):
        rp = r_precision(g, s, num_candidates=100)
    assert rp.num_candidates == 5 and "only 5" in rp.note
    assert r_precision(g, g, num_candidates=3, seed=1).value == 1.0
    big_g, big_s = torch.randn(150, 8), torch.randn(150, 8)
    assert r_precision(big_g, big_s, seed=3) == r_precision(big_g, big_s, seed=3)
