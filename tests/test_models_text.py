import torch

from tgsr.config import TextEncoderConfig
from tgsr.models import TextEncoder, token_mask_from_lengths


def _tokens(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 1, 0, 5])
    tokens = torch.randint(2, 40, (5, 7), generator=g)
    other = tokens.clone()
    for i, n in enumerate(lengths.tolist()):
        tokens[i, n:] = 0
        other[i, n:] = torch.randint(2, 40, (7 - n,), generator=g)
    return tokens, other, lengths


def test_shapes_and_padding_zero():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(embedding_dim=12, hidden_dim=6), 40).eval()
    tokens, _, lengths = _tokens()
    words, sentence = enc(tokens, lengths)
    assert words.shape == (5, 12, 7) and sentence.shape == (5, 12)
    mask = token_mask_from_lengths(lengths, 7)
    assert torch.all(words.permute(0, 2, 1)[mask] == 0)
    assert torch.all(words[3] == 0) and torch.all(sentence[3] == 0)  # empty caption
    assert words[0].abs().sum() > 0


def test_padding_tokens_change_nothing():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(embedding_dim=12, hidden_dim=6), 40).eval()
    tokens, other, lengths = _tokens()
    w1, s1 = enc(tokens, lengths)
    w2, s2 = enc(other, lengths)
    assert torch.equal(w1, w2) and torch.equal(s1, s2)


def test_batch_order_independent():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(embedding_dim=12, hidden_dim=6), 40).eval()
    tokens, _, lengths = _tokens()
    w, s = enc(tokens, lengths)
    w1, s1 = enc(tokens[1:2], lengths[1:2])
    torch.testing.assert_close(w[1], w1[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(s[1], s1[0], atol=1e-6, rtol=0)


def test_embedding_init_and_dropout():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(embedding_dim=12, hidden_dim=6, dropout=0.5), 40)
    assert enc.embedding.weight.abs().max() <= 0.1
    tokens, _, lengths = _tokens()
    enc.train()
    a, _ = enc(tokens, lengths)
    b, _ = enc(tokens, lengths)
    assert not torch.equal(a, b)  # dropout active in training
