"""Captions -> tokens: the DAMSM tokenizer and the vocabulary (``vocab.json``)."""

from tgsr.text.tokenizer import tokenize
from tgsr.text.vocab import PAD, UNK, EncodedCaption, Vocabulary

__all__ = ["PAD", "UNK", "EncodedCaption", "Vocabulary", "tokenize"]
