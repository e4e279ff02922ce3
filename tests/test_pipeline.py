"""TGSRPipeline: loading/saving, input and output types, text handling, tiling, bad folders."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers_pipeline import make_pipeline_dir, make_run_dir, natural_image
from tgsr.errors import BadInputError, ModelFormatError
from tgsr.pipeline import CaptionWarning, TGSRPipeline

CAPTION = "a red and cyan striped circle"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("pipe"), scale=4)  # x4: fast on a CPU


@pytest.fixture(scope="module")
def pipe(model_dir):
    # float32 on every machine: these tests compare with the float32 generator (dtype="auto"
    # would pick bf16 on a CPU with AMX / AVX-512-BF16; the bf16 path: tests/test_dtype.py)
    return TGSRPipeline.from_pretrained(model_dir, dtype="float32")


@pytest.fixture(scope="module")
def image():
    return natural_image(10, 14, seed=1)


def _arr(img) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def test_round_trip_and_output_size(pipe, image, tmp_path):
    out = pipe(image, CAPTION)
    assert out.image.size == (14 * 4, 10 * 4)  # PIL: (W, H)
    pipe.save_pretrained(tmp_path / "copy")
    again = TGSRPipeline.from_pretrained(tmp_path / "copy", dtype="float32")
    assert np.array_equal(_arr(again(image, CAPTION).image), _arr(out.image))
    info = json.loads((tmp_path / "copy" / "pipeline.json").read_text())
    assert info["format_version"] == 1 and info["scale"] == 4 and info["use_text"] is True


def test_input_and_output_types_agree(pipe, image):
    ref = pipe(image, CAPTION, output_type="np").images[0]
    assert ref.dtype == np.uint8 and ref.shape == (40, 56, 3)
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    for inp in (Image.fromarray(image), chw, chw[None]):
        assert np.array_equal(pipe(inp, CAPTION, output_type="np").images[0], ref)
    pt = pipe(torch.stack([chw, chw]), CAPTION, output_type="pt").images
    assert pt.shape == (2, 3, 40, 56) and pt.dtype == torch.float32
    assert torch.isfinite(pt).all() and pt.min() >= 0 and pt.max() <= 1
    assert np.array_equal(np.floor(pt[1].permute(1, 2, 0).numpy() * 255 + 0.5), ref)


def test_captions_change_the_output(pipe, image):
    a = _arr(pipe(image, CAPTION).image)
    b = _arr(pipe(image, "a blue and yellow checked square").image)
    assert np.abs(a - b).max() >= 1  # editable SR: the text reaches the pixels


def test_attention_and_words(pipe, image):
    out = pipe(image, CAPTION, return_attention=True)
    assert out.words == [CAPTION.split()]
    attn = out.attention[0]
    assert attn.shape[0] == 6 and attn.shape[1:] == (40, 56)  # paper layout: last TAM at xS
    assert torch.allclose(attn.sum(0), torch.ones(40, 56), atol=1e-4)  # softmax over words


def test_unknown_words_warn(pipe, image):
    with pytest.warns(CaptionWarning, match="zebra"):
        out = pipe(image, "a zebra circle")
    assert out.unknown_words == [["zebra"]] and out.warnings
    with pytest.warns(CaptionWarning, match="no word of the caption"):
        out = pipe(image, "zebra giraffe")
    assert out.unknown_words == [["zebra", "giraffe"]]


def test_long_caption_reads_the_first_words(pipe, image):
    words = "a red and cyan striped circle on the left".split()  # 9 > max_words = 8
    with pytest.warns(CaptionWarning, match="first 8"):
        long = pipe(image, " ".join(words + ["zebra"] * 3))
    first = pipe(image, " ".join(words[:8]))
    assert long.words == [words[:8]]
    assert np.array_equal(_arr(long.image), _arr(first.image))


def test_empty_caption_is_text_free(pipe, image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty caption is not a warning
        out = pipe(image, "", return_attention=True, output_type="pt")
    assert out.words == [[]] and out.attention[0].shape[0] == 0
    assert torch.isfinite(out.images).all()
    lq = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    t, d = pipe.max_words, pipe.text_encoder.feature_dim
    with torch.no_grad():  # TAM with no word: attended feature exactly zero
        ref = pipe.generator(lq, torch.zeros(1, d, t), torch.zeros(1, d),
                             torch.ones(1, t, dtype=torch.bool)).sr.clamp(0, 1)  # fmt: skip
    assert torch.allclose(out.images, ref, atol=1e-6)
    # punctuation only is an empty caption too
    assert pipe(image, " !? ").words == [[]]


def test_tiling_in_the_pipeline(pipe, image):
    big = natural_image(36, 30, seed=2)
    untiled = pipe(big, CAPTION, tile=0, output_type="pt")
    tiled = pipe(big, CAPTION, tile=24, overlap=16, return_attention=True, output_type="pt")
    assert tiled.tiled and not untiled.tiled
    assert tiled.images.shape == untiled.images.shape == (1, 3, 144, 120)
    assert (tiled.images - untiled.images).abs().max() < 1e-4
    assert tiled.attention[0].shape == (6, 144, 120)


def test_automatic_tiling_for_large_inputs(model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    info = json.loads((folder / "pipeline.json").read_text())
    (folder / "pipeline.json").write_text(json.dumps({**info, "tile": 16, "tile_overlap": 8}))
    small_tile = TGSRPipeline.from_pretrained(folder)
    assert not small_tile(natural_image(16, 16), CAPTION).tiled
    out = small_tile(natural_image(20, 29), CAPTION, output_type="pt")
    assert out.tiled and out.images.shape == (1, 3, 80, 116)


def test_bf16(model_dir, pipe, image):
    ref = pipe(image, CAPTION, output_type="pt").images
    low_pipe = TGSRPipeline.from_pretrained(model_dir, dtype="bf16")  # .to(bf16) is lossy
    assert low_pipe.dtype == torch.bfloat16
    low = low_pipe(image, CAPTION, output_type="pt").images
    assert low.dtype == torch.float32 and (low - ref).abs().mean() < 0.02


def test_no_text_model_ignores_text(tmp_path, image):
    pipe = TGSRPipeline.from_pretrained(make_pipeline_dir(tmp_path, scale=4, use_text=False))
    assert not (tmp_path / "model" / "text_encoder").exists()
    a = pipe(image, CAPTION, return_attention=True)
    b = pipe(image, "zebra")
    assert not b.warnings and a.attention is None
    assert np.array_equal(_arr(a.image), _arr(b.image))


def test_run_folder_loads_directly(tmp_path, image, pipe):
    run = make_run_dir(tmp_path / "run", scale=4)
    direct = TGSRPipeline.from_pretrained(run, dtype="float32")
    assert np.array_equal(_arr(direct(image, CAPTION).image), _arr(pipe(image, CAPTION).image))


def test_bad_images(pipe):
    with pytest.raises(BadInputError, match="uint8"):
        pipe(np.zeros((8, 8, 3), dtype=np.float32), CAPTION)
    with pytest.raises(BadInputError, match=r"\(3, H, W\)"):
        pipe(torch.rand(1, 8, 8), CAPTION)
    with pytest.raises(BadInputError, match="unsupported image type"):
        pipe("image.png", CAPTION)
    with pytest.raises(BadInputError, match="2 captions for 1 images"):
        pipe(torch.rand(3, 8, 8), ["a", "b"])


def _break(model_dir, tmp_path, edit):
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    edit(folder)
    with pytest.raises(ModelFormatError) as exc:
        TGSRPipeline.from_pretrained(folder)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_bad_model_folders(model_dir, tmp_path):
    with pytest.raises(ModelFormatError, match="not found"):
        TGSRPipeline.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match="not a tgsr pipeline folder"):
        TGSRPipeline.from_pretrained(tmp_path / "empty")
    cases = [
        (lambda f: (f / "generator" / "model.safetensors").write_bytes(b"garbage"), "corrupt"),
        (lambda f: (f / "pipeline.json").write_text("{"), "not valid JSON"),
        (lambda f: _edit_json(f / "pipeline.json", scale=8), "x8 but the generator is x4"),
        (lambda f: _edit_json(f / "pipeline.json", color="red"), "unknown key"),
        (lambda f: _edit_json(f / "pipeline.json", format_version=9), "format_version"),
        (lambda f: (f / "vocab.json").unlink(), "vocab.json"),
        (lambda f: _edit_json(f / "vocab.json", words=["<pad>", "<unk>", "a"]), "vocab.json has 3"),
        (lambda f: shutil.rmtree(f / "text_encoder"), "text_encoder"),
    ]
    for i, (edit, needle) in enumerate(cases):
        msg = _break(model_dir, tmp_path / str(i), edit)
        assert needle in msg, msg
