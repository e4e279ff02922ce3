import pytest
import torch

from tgsr.models import TextAttention


def _inputs():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 8, 5, 6, generator=g)
    words = torch.randn(3, 10, 6, generator=g)
    lengths = torch.tensor([6, 2, 0])
    mask = torch.arange(6)[None] >= lengths[:, None]
    words = words.masked_fill(mask[:, None, :], 0.0)
    return feats, words, mask, lengths


def test_attention_sums_to_one_and_zero_on_padding():
    torch.manual_seed(0)
    tam = TextAttention(8, 10)
    feats, words, mask, _ = _inputs()
    attended, attn = tam(feats, words, mask)
    assert attended.shape == feats.shape and attn.shape == (3, 6, 5, 6)
    torch.testing.assert_close(attn[:2].sum(1), torch.ones(2, 5, 6))
    assert torch.all(attn[mask[:, :, None, None].expand_as(attn)] == 0)


def test_empty_caption_gives_zero_not_nan():
    torch.manual_seed(0)
    tam = TextAttention(8, 10)
    feats, words, mask, _ = _inputs()
    attended, attn = tam(feats, words, mask)
    assert torch.all(attended[2] == 0) and torch.all(attn[2] == 0)
    feats.requires_grad_(True)
    attended, _ = tam(feats, words, mask)
    attended.sum().backward()
    assert torch.all(feats.grad[2] == 0)  # no NaN, and nothing to learn from no words
    assert feats.grad[:2].abs().amax() > 0


def test_mixed_lengths_equal_each_alone():
    torch.manual_seed(0)
    tam = TextAttention(8, 10)
    feats, words, mask, lengths = _inputs()
    attended, attn = tam(feats, words, mask)
    for i in range(2):
        n = int(lengths[i])
        a1, m1 = tam(feats[i : i + 1], words[i : i + 1, :, :n], None)
        torch.testing.assert_close(attended[i], a1[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(attn[i, :n], m1[0], atol=1e-6, rtol=1e-5)


def test_padding_values_change_nothing():
    torch.manual_seed(0)
    tam = TextAttention(8, 10)
    feats, words, mask, _ = _inputs()
    noisy = words + torch.randn_like(words) * mask[:, None, :]
    a1, m1 = tam(feats, words, mask)
    a2, m2 = tam(feats, noisy, mask)
    assert torch.equal(a1, a2) and torch.equal(m1, m2)


def test_query_extra_channels_steer_the_maps_and_leave_the_values_c_wide():
    """tam_coords: the query is concat(features, extra) against words projected to C + E dims;
    two pixels with the same features but other extra channels read other words."""
    torch.manual_seed(0)
    tam = TextAttention(8, 10, query_extra=2)
    assert tam.project.weight.shape[0] == 10
    feats, words, mask, _ = _inputs()
    feats[:, :, :, 1] = feats[:, :, :, 0]  # columns 0 and 1: identical features
    xy = torch.zeros(3, 2, 5, 6)
    xy[:, 0] = torch.linspace(-1, 1, 6)  # only the x channel tells them apart
    attended, attn = tam(feats, words, mask, xy)
    assert attended.shape == feats.shape
    torch.testing.assert_close(attn[:2].sum(1), torch.ones(2, 5, 6))
    assert (attn[0, :, :, 0] - attn[0, :, :, 1]).abs().amax() > 1e-3
    # the scores are the paper's dot product on the widened query
    e = tam.project(words)
    q = torch.cat([feats, xy], 1)[0].reshape(10, -1).T
    ref = torch.softmax(q @ e[0], dim=-1).T.reshape(6, 5, 6)
    torch.testing.assert_close(attn[0], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="extra query channels"):
        tam(feats, words, mask)
    with pytest.raises(ValueError, match="extra query channels"):
        TextAttention(8, 10)(feats, words, mask, xy)
