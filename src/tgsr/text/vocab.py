"""Vocabulary built from training captions only; index 0 = padding, 1 = unknown word."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tgsr.files import atomic_write
from tgsr.text.tokenizer import tokenize

PAD = "<pad>"
UNK = "<unk>"
VOCAB_FORMAT_VERSION = 1


@dataclass
class EncodedCaption:
    ids: list[int]  # length == max_words, zero-padded
    length: int  # number of real tokens (>= 1 unless the caption was empty)
    unknown: list[str] = field(default_factory=list)  # out-of-vocabulary words, in order


class Vocabulary:
    """Word <-> index map. Saved as ``vocab.json``.

    Out-of-vocabulary words map to ``<unk>`` (index 1) and are counted in
    :attr:`oov_counts`, so a caller can report them; nothing is dropped silently.
    """

    def __init__(self, words: list[str], lowercase: bool = True):
        if words[:2] != [PAD, UNK]:
            raise ValueError("a vocabulary must start with <pad>, <unk>")
        if len(set(words)) != len(words):
            raise ValueError("duplicate words in vocabulary")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.lowercase = lowercase
        self.oov_counts: Counter[str] = Counter()

    # -- construction ---------------------------------------------------------
    @classmethod
    def build(
        cls, captions: Iterable[str], min_count: int = 1, lowercase: bool = True
    ) -> Vocabulary:
        """Words in order of first appearance (AttnGAN's order), kept if seen ``min_count`` times."""
        counts: Counter[str] = Counter()
        order: list[str] = []
        for cap in captions:
            for tok in tokenize(cap, lowercase=lowercase):
                if tok not in counts:
                    order.append(tok)
                counts[tok] += 1
        kept = [w for w in order if counts[w] >= min_count and w not in (PAD, UNK)]
        return cls([PAD, UNK, *kept], lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    # -- encoding -------------------------------------------------------------
    def encode(
        self, caption: str, max_words: int, rng: random.Random | None = None
    ) -> EncodedCaption:
        """Tokens -> ids padded to ``max_words``.

        Over-long captions: with ``rng`` (training) a random subset of ``max_words`` positions is
        kept in order, as AttnGAN does; without ``rng`` (evaluation) the first ``max_words``
        words are kept, so evaluation is deterministic.
        """
        tokens = tokenize(caption, lowercase=self.lowercase)
        if len(tokens) > max_words:
            if rng is not None:
                keep = sorted(rng.sample(range(len(tokens)), max_words))
                tokens = [tokens[i] for i in keep]
            else:
                tokens = tokens[:max_words]
        ids, unknown = [], []
        for tok in tokens:
            i = self.index.get(tok)
            if i is None:
                unknown.append(tok)
                self.oov_counts[tok] += 1
                i = 1
            ids.append(i)
        length = len(ids)
        return EncodedCaption(ids=ids + [0] * (max_words - length), length=length, unknown=unknown)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids if i != 0]

    def oov_report(self, top: int = 10) -> str:
        if not self.oov_counts:
            return "no out-of-vocabulary words"
        total = sum(self.oov_counts.values())
        common = ", ".join(f"{w} ({n})" for w, n in self.oov_counts.most_common(top))
        return f"{total} out-of-vocabulary word(s), {len(self.oov_counts)} distinct: {common}"

    # -- files ----------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        payload = {
            "format_version": VOCAB_FORMAT_VERSION,
            "lowercase": self.lowercase,
            "words": self.words,
        }
        atomic_write(path, json.dumps(payload, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.json"
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a valid vocab.json ({exc})") from None
        if not isinstance(payload, dict) or "words" not in payload:
            raise ValueError(f"{path}: not a tgsr vocab.json (no 'words')")
        if payload.get("format_version") != VOCAB_FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported vocab format_version {payload.get('format_version')}"
            )
        words, lowercase = payload["words"], payload.get("lowercase", True)
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path}: 'words' must be a list of strings")
        if not isinstance(lowercase, bool):
            raise ValueError(f"{path}: 'lowercase' must be true or false")
        try:
            return cls(words, lowercase=lowercase)
        except ValueError as exc:  # no <pad>, <unk> at the start (an empty list), duplicates
            raise ValueError(f"{path}: {exc}") from None
