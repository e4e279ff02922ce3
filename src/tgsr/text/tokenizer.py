"""Tokenization as AttnGAN's DAMSM does it (docs/paper_vs_code.md R1): lower-case, ``\\w+``
runs, ASCII only."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def tokenize(caption: str, lowercase: bool = True) -> list[str]:
    """``"A Red-and-cyan circle!"`` -> ``["a", "red", "and", "cyan", "circle"]``.

    The two-character U+FFFD sequence becomes a space, runs of word characters are kept,
    punctuation is dropped and non-ASCII characters are removed from each token.
    ``lowercase=False`` keeps case (CelebA attribute names such as ``Big_Lips``).
    """
    text = caption.replace("\ufffd\ufffd", " ")
    if lowercase:
        text = text.lower()
    tokens = []
    for tok in _WORD.findall(text):
        tok = tok.encode("ascii", "ignore").decode("ascii")
        if tok:
            tokens.append(tok)
    return tokens
