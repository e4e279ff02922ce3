"""Fuzzing with hypothesis: text, configs, split lists, manifests and image bytes. Whatever the
input, the code answers with a result or with the project's own one-line error, never a crash.

CI runs a bounded, derandomized number of examples per test (``TGSR_FUZZ_EXAMPLES``, default
40); the longer run of docs/reliability.md is ``TGSR_FUZZ_EXAMPLES=2000 TGSR_FUZZ_RANDOM=1
pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from tgsr.config import ConfigError, load_config, parse_overrides
from tgsr.errors import BadInputError, TGSRError
from tgsr.text import Vocabulary, tokenize

FUZZ = settings(
    max_examples=int(os.environ.get("TGSR_FUZZ_EXAMPLES", "40")),
    derandomize=not os.environ.get("TGSR_FUZZ_RANDOM"),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


_ROOT = Path(tempfile.mkdtemp(prefix="tgsr-fuzz-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)


def _scratch() -> Path:
    """An emptied folder per example (hypothesis runs many examples inside one test call)."""
    shutil.rmtree(_ROOT, ignore_errors=True)
    _ROOT.mkdir()
    return _ROOT


# ----------------------------------------------------------------------------- text
@FUZZ
@given(st.text())
@example("\ufffd\ufffd")
@example("Ünïcödé ß ﬁ ℌ 𝔘 ２３ ١٢٣")
def test_tokenize_any_unicode(text):
    tokens = tokenize(text)
    assert all(t and t.isascii() and t == t.lower() for t in tokens)
    assert all(" " not in t for t in tokens)
    assert tokenize(text, lowercase=False) is not None


@FUZZ
@given(st.lists(st.text(), max_size=8), st.text(), st.integers(1, 20), st.integers(0, 2**32))
def test_vocabulary_encodes_any_caption(captions, caption, max_words, seed):
    vocab = Vocabulary.build(captions)
    for rng in (None, random.Random(seed)):
        enc = vocab.encode(caption, max_words, rng)
        assert len(enc.ids) == max_words and 0 <= enc.length <= max_words
        assert all(0 <= i < len(vocab) for i in enc.ids)
        assert all(i == 0 for i in enc.ids[enc.length :])
        assert all(i != 0 for i in enc.ids[: enc.length])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"format_version": st.sampled_from([1, 2, "1"]), "words": JSON},
            optional={"lowercase": JSON},
        ).map(lambda v: json.dumps(v).encode()),
    )
)
@example(b'{"format_version": 1, "words": 5}')
@example(b'{"format_version": 1, "words": ["<pad>", "<unk>", ["x"]]}')
def test_vocab_json_of_any_content_loads_or_is_refused(data):
    path = _scratch() / "vocab.json"
    path.write_bytes(data)
    try:
        vocab = Vocabulary.load(path)
    except ValueError as exc:  # the documented error (callers turn it into ModelFormatError)
        assert "\n" not in str(exc)
        return
    assert vocab.words[:2] == ["<pad>", "<unk>"] and all(isinstance(w, str) for w in vocab.words)


# ----------------------------------------------------------------------------- config
KEYS = ["train.lr", "train.batch_size", "train.betas", "data.scale", "data.max_words",
        "generator.use_text", "train.mixed_precision", "loss.tar", "data.synthetic.num",
        "train", "x.y", "", "damsm.path", "train.max_minutes", "eval.seed"]  # fmt: skip


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.tuples(st.sampled_from(KEYS) | st.text(max_size=12), st.text(max_size=12)).map(
                lambda kv: f"{kv[0]}={kv[1]}"
            ),
        ),
        max_size=4,
    )
)
@example(["train.lr=nan"])
@example(["train.lr=.inf"])
@example(["train.betas=[0.9]"])
@example(["train=3"])
@example(["train.lr.x=1"])
def test_set_overrides_of_any_text_load_or_are_refused(overrides):
    try:
        cfg = load_config("quickstart", overrides)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert cfg.train.batch_size >= 1 and cfg.train.lr > 0


@FUZZ
@given(st.text(max_size=300) | JSON.map(lambda v: yaml.safe_dump(v)))
@example("extends: quickstart\ntrain: {lr: -1}\n")
@example("extends: [1]\n")
@example("train: !!python/object:os.system {}\n")
@example("a: &x [*x]\n")
def test_config_files_of_any_text_load_or_are_refused(text):
    path = _scratch() / "cfg.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(st.lists(st.text(max_size=20), max_size=5))
def test_parse_overrides_is_total(items):
    try:
        out = parse_overrides(items)
    except ConfigError:
        return
    assert isinstance(out, dict)


# ----------------------------------------------------------------------------- data files
@FUZZ
@given(st.binary(max_size=300) | JSON.map(lambda v: __import__("pickle").dumps(v, protocol=2)))
@example(b"cos\nsystem\n(S'echo pwned'\ntR.")
@example(b"P")  # found by the long run: a two-line UnpicklingError message
def test_split_lists_of_any_bytes(data):
    from tgsr.data.datasets import read_name_list

    folder = _scratch()
    for name in ("filenames.pickle", "filenames.txt"):
        (folder / name).write_bytes(data)
        try:
            names = read_name_list(folder / name)
        except BadInputError as exc:
            assert "\n" not in str(exc)
            continue
        assert all(isinstance(n, str) for n in names)


@FUZZ
@given(st.lists(st.text(max_size=60) | JSON.map(json.dumps), max_size=6), st.booleans())
@example(['{"image": "a.png", "captions": ["a red circle"], "class_id": "x"}'], False)
@example(['{"image": "a.png", "captions": ["a red circle"], "key": null}'], False)
@example(['{"image": "a.png", "captions": ["a red circle"], "split": []}'], True)
@example(['{"image": "\\u0000", "captions": ["a red circle"]}'], True)
def test_jsonl_manifests_of_any_lines(lines, skip_bad):
    from tgsr.data.datasets import Skips, read_jsonl

    manifest = _scratch() / "m.jsonl"
    manifest.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    skipped: list[str] = []
    try:
        records = read_jsonl(manifest, "train", None, Skips(skip_bad, skipped))
    except BadInputError as exc:
        assert not skip_bad and "\n" not in str(exc)
        return
    assert all(r.captions and isinstance(r.key, str) for r in records)


@FUZZ
@given(st.lists(st.text(max_size=60) | JSON.map(json.dumps), max_size=6), st.booleans())
@example(['{"image": "\\u0000"}'], False)
def test_upscale_manifests_of_any_lines(lines, skip_bad):
    from tgsr.cli.upscale_inputs import collect_jobs

    manifest = _scratch() / "m.jsonl"
    manifest.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        jobs, bad = collect_jobs([manifest], ["a caption"], skip_bad)
    except BadInputError as exc:
        assert "\n" not in str(exc)
        return
    assert all(j.captions and all(isinstance(c, str) for c in j.captions) for j in jobs)


@FUZZ
@given(st.binary(max_size=400))
def test_caption_files_of_any_bytes(data):
    from tgsr.data.datasets import read_captions

    path = _scratch() / "c.txt"
    path.write_bytes(data)
    for flowers in (False, True):
        try:
            caps = read_captions(path, None, flowers=flowers)
        except BadInputError:
            continue
        assert caps and all(tokenize(c) for c in caps)


# ----------------------------------------------------------------------------- images
def _valid(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {fmt: _valid(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")}


def _decode(data: bytes) -> None:
    """load_image and image_size, each on its own: a uint8 RGB image (or a size) or one
    BadInputError line, no raw Pillow warning (damaged EXIF / metadata) reaching the user, and
    where both read the file, the header's size is the decoded image's (the CLI's output-size
    check relies on it)."""
    from tgsr.data.images import image_size, load_image

    path = _scratch() / "img"
    path.write_bytes(data)
    read: dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, fn in (("size", image_size), ("image", load_image)):
            try:
                read[name] = fn(path)
            except BadInputError as exc:
                assert str(exc).startswith(str(path)) and "\n" not in str(exc)
    assert not [w for w in caught if "PIL" in w.filename], [str(w.message) for w in caught]
    if "image" in read:
        img = read["image"]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        if "size" in read:
            assert read["size"] == img.shape[1::-1]


@FUZZ
@given(st.binary(max_size=600))
def test_image_decoding_of_random_bytes(data):
    _decode(data)


@FUZZ
@given(
    st.sampled_from(sorted(SEEDS)),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 10**6),
)
def test_image_decoding_of_damaged_real_files(fmt, flips, cut):
    """Valid PNG/JPEG/GIF/BMP/TIFF/WebP files with bytes changed and the tail cut."""
    data = bytearray(SEEDS[fmt])
    for pos, value in flips:
        data[pos % len(data)] = value
    _decode(bytes(data[: max(8, len(data) - cut % len(data))]))


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_the_image_seeds_decode(fmt):
    """The fuzzed files start from valid ones (so the damage, not the seed, is what is tested)."""
    _decode(SEEDS[fmt])


def test_errors_are_the_projects_own():
    assert issubclass(BadInputError, TGSRError)
