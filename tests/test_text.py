"""Tokenizer and vocabulary (DAMSM conventions, deterministic evaluation truncation)."""

from __future__ import annotations

import random

import pytest

from tgsr.text import PAD, UNK, Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation_and_non_ascii():
    assert tokenize("A Red-and-CYAN circle!  Café") == ["a", "red", "and", "cyan", "circle", "caf"]
    assert tokenize("Big_Lips Young", lowercase=False) == ["Big_Lips", "Young"]
    assert tokenize("...") == []


def test_vocabulary_is_built_in_first_appearance_order_with_pad_and_unk():
    vocab = Vocabulary.build(["a red circle", "a blue square", "red red"])
    assert vocab.words[:2] == [PAD, UNK]
    assert vocab.words[2:] == ["a", "red", "circle", "blue", "square"]


def test_encode_pads_and_counts_unknown_words():
    vocab = Vocabulary.build(["a red circle"])
    enc = vocab.encode("a green circle", max_words=6)
    assert enc.ids == [2, 1, 4, 0, 0, 0]
    assert enc.length == 3 and enc.unknown == ["green"]
    assert vocab.oov_counts["green"] == 1
    assert "green (1)" in vocab.oov_report()


def test_overlong_captions_first_n_at_eval_random_ordered_subset_in_training():
    words = [f"w{i}" for i in range(30)]
    vocab = Vocabulary.build([" ".join(words)])
    ev = vocab.encode(" ".join(words), max_words=18)
    assert vocab.decode(ev.ids) == words[:18]
    assert vocab.encode(" ".join(words), max_words=18).ids == ev.ids  # deterministic
    tr = vocab.encode(" ".join(words), max_words=18, rng=random.Random(1))
    kept = [int(w[1:]) for w in vocab.decode(tr.ids)]
    assert len(kept) == 18 and kept == sorted(kept) and kept != list(range(18))


def test_empty_caption_has_length_zero():
    vocab = Vocabulary.build(["a"])
    enc = vocab.encode("", max_words=4)
    assert enc.length == 0 and enc.ids == [0, 0, 0, 0]


def test_save_load_round_trip_and_bad_files(tmp_path):
    vocab = Vocabulary.build(["Big_Lips Young"], lowercase=False)
    vocab.save(tmp_path)
    again = Vocabulary.load(tmp_path / "vocab.json")
    assert again == vocab and again.lowercase is False
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid vocab.json"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        Vocabulary.load(tmp_path / "missing.json")
