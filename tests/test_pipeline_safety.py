"""Python API and model-folder safety: output-size limit, input range, caption quoting, exact
float32 weights after bf16, file permissions, export swap, one-line errors for bad folders."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from helpers_pipeline import make_pipeline_dir, make_run_dir, natural_image
from tgsr.errors import BadInputError, ModelFormatError, TGSRError
from tgsr.export import export_pipeline
from tgsr.pipeline import MAX_OUTPUT_PIXELS, CaptionWarning, TGSRPipeline

CAPTION = "a red and cyan striped circle"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("safety"), scale=4)


@pytest.fixture(scope="module")
def pipe(model_dir):
    return TGSRPipeline.from_pretrained(model_dir, dtype="float32")


@pytest.fixture(scope="module")
def image():
    return natural_image(10, 14, seed=1)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- 1: output size


def test_output_size_limit_refuses_before_any_work(pipe, monkeypatch):
    assert MAX_OUTPUT_PIXELS == 2**28  # as tgsr upscale

    def no_work(_):
        raise AssertionError("the image was converted before the size check")

    monkeypatch.setattr("tgsr.pipeline.to_batch", no_work)
    big = np.zeros((6000, 6000, 3), np.uint8)  # x4: 24000x24000 > 2**28
    with pytest.raises(BadInputError, match="pixel limit") as exc:
        pipe(big, CAPTION)
    assert "24000x24000" in _one_line(exc) and str(MAX_OUTPUT_PIXELS) in str(exc.value)
    batch = torch.zeros(1, 1, 1, 1).expand(3, 3, 5000, 5000)  # 3 x 20000² > 2**28, no memory
    with pytest.raises(BadInputError, match="3 images"):
        pipe(batch, CAPTION)
    with pytest.raises(BadInputError, match="PIL|pixel limit"):
        pipe(Image.new("RGB", (9000, 9000)), CAPTION)


def test_output_size_limit_keyword(pipe, image):
    pixels = 40 * 56  # the 10x14 image at x4
    with pytest.raises(BadInputError, match=f"above the {pixels - 1} pixel limit"):
        pipe(image, CAPTION, max_output_pixels=pixels - 1)
    assert pipe(image, CAPTION, max_output_pixels=pixels).image.size == (56, 40)
    for bad in (0, -5, 1.5, "many", True):
        with pytest.raises(BadInputError, match="max_output_pixels"):
            pipe(image, CAPTION, max_output_pixels=bad)


# ----------------------------------------------------------------------------- 2: long captions


def test_long_caption_warning_quotes_only_the_words_read(pipe, image):
    caption = " ".join([CAPTION] * 80)  # 480 words; the model reads max_words = 8
    with pytest.warns(CaptionWarning) as record:
        out = pipe(image, caption)
    (note,) = [str(w.message) for w in record if "caption has" in str(w.message)]
    read = " ".join(caption.split()[: pipe.max_words])
    assert note.endswith(f"'{read} …'") and len(note) < 120
    assert out.warnings == [note]


def test_edit_grid_cuts_long_captions(tmp_path):
    from tgsr.evaluation.figures import edit_rows

    lq = np.zeros((8, 8, 3), np.uint8)
    outs = [np.zeros((32, 32, 3), np.uint8)] * 2
    short = edit_rows(lq, ["a red circle", "a blue square"], outs, tmp_path / "short.png")
    long_caption = " ".join(["a red and cyan striped circle"] * 80)
    cut = edit_rows(lq, [long_caption, "a blue square"], outs, tmp_path / "long.png")
    h_short, h_cut = Image.open(short).height, Image.open(cut).height
    assert h_cut <= h_short + 4 * 20  # at most 4 lines of text, not hundreds
    words = edit_rows(lq, [long_caption, "x"], outs, tmp_path / "words.png", max_words=8)
    assert Image.open(words).height <= h_cut


# ----------------------------------------------------------------------------- 3: bf16 + save


def test_bf16_pipeline_saves_the_exact_float32_weights(tmp_path, image):
    model_dir = make_pipeline_dir(tmp_path / "m", scale=4, word_norm=True)  # a BatchNorm
    pipe = TGSRPipeline.from_pretrained(model_dir, dtype="float32")
    torch.manual_seed(0)
    with torch.no_grad():  # values bf16 cannot hold everywhere, normalisation statistics too
        for name, t in pipe.generator.state_dict().items():
            if t.is_floating_point():
                t.mul_(1 + 0.01 * torch.rand_like(t)).add_(1e-3 * torch.rand_like(t))
                if "running_var" in name:
                    t.abs_()
    model_dir = pipe.save_pretrained(model_dir)
    original = load_file(str(model_dir / "generator" / "model.safetensors"))
    assert any("running_var" in k for k in original)
    low = TGSRPipeline.from_pretrained(model_dir, dtype="bf16")
    assert torch.bfloat16 in {p.dtype for p in low.generator.parameters()}
    before = low(image, CAPTION, output_type="np").images[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the weights are exact
        low.save_pretrained(tmp_path / "copy")
    saved = load_file(str(tmp_path / "copy" / "generator" / "model.safetensors"))
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in original)
    # still the same bf16 pipeline after saving
    assert torch.bfloat16 in {p.dtype for p in low.generator.parameters()}
    assert np.array_equal(low(image, CAPTION, output_type="np").images[0], before)
    again = TGSRPipeline.from_pretrained(tmp_path / "copy", dtype="float32")
    state = again.generator.state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original)
    # .to(float32) after bf16 restores the exact weights too
    back = low.to(dtype="float32").generator.state_dict()
    assert all(torch.equal(back[k], original[k]) for k in original)


def test_bf16_weights_changed_after_conversion_warn_on_save(model_dir, tmp_path):
    low = TGSRPipeline.from_pretrained(model_dir, dtype="bf16")
    with torch.no_grad():
        next(low.generator.parameters()).add_(1)
    with pytest.warns(UserWarning, match="rounded"):
        low.save_pretrained(tmp_path / "copy")


# ----------------------------------------------------------------------------- 4: input range


def test_float_tensor_outside_0_1_is_refused(pipe, image):
    t = torch.from_numpy(image).permute(2, 0, 1).float()  # 0..255
    with pytest.raises(BadInputError, match=r"\[0, 1\].*divide it by 255") as exc:
        pipe(t, CAPTION)
    _one_line(exc)
    with pytest.raises(BadInputError, match=r"\[0, 1\]"):
        pipe(t / 127.5 - 1, CAPTION)  # normalised to [-1, 1]
    with pytest.raises(BadInputError, match="uint8"):  # numpy floats: refused, as before
        pipe(image.astype(np.float32) / 255, CAPTION)
    # bicubic overshoot, as tgsr.data.degradations.degrade leaves it (about +-0.04 at x8)
    near = t / 255
    near[:, 0, 0], near[:, 0, 1] = -0.05, 1.05
    assert pipe(near, CAPTION).image.size == (56, 40)


def test_a_list_of_images_is_one_line_that_says_what_to_do(pipe, image):
    with pytest.raises(BadInputError, match="one call per image") as exc:
        pipe([image, image], [CAPTION, CAPTION])
    _one_line(exc)


# ----------------------------------------------------------------------------- 5: permissions


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_respect_the_umask(pipe, tmp_path, umask):
    from tgsr.data.images import save_png
    from tgsr.files import atomic_write

    old = os.umask(umask)
    try:
        pipe.save_pretrained(tmp_path / "model")
        save_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8))
        atomic_write(tmp_path / "a.txt", "text")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 8
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in files}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left


# ----------------------------------------------------------------------------- 6: export swap


def test_export_over_a_pipeline_leaves_only_the_new_model(tmp_path):
    out = make_pipeline_dir(tmp_path / "a", scale=4)  # a text model with text_encoder/
    (out / "onnx").mkdir()
    (out / "onnx" / "generator.onnx").write_bytes(b"old")
    run = make_run_dir(tmp_path / "b" / "run", scale=4, use_text=False)
    export_pipeline(run, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["generator/config.json", "generator/model.safetensors", "pipeline.json"]
    assert json.loads((out / "pipeline.json").read_text())["use_text"] is False
    assert sorted(p.name for p in out.parent.iterdir()) == ["model", "run"]  # no temp folders


def test_a_failed_export_leaves_the_old_folder_intact(tmp_path, monkeypatch):
    out = make_pipeline_dir(tmp_path / "a", scale=4)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    run = make_run_dir(tmp_path / "b" / "run", scale=4, use_text=False)

    def fail(*_, **__):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tgsr.models.serialization.save_file", fail)
    with pytest.raises(OSError):
        export_pipeline(run, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["model", "run"]
    # the old checks stay
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(TGSRError, match="not a pipeline folder"):
        export_pipeline(run, tmp_path / "other")
    with pytest.raises(TGSRError, match="is a file"):
        export_pipeline(run, tmp_path / "other" / "notes.txt")


# ----------------------------------------------------------------------------- 7, 8: errors


@pytest.mark.parametrize(
    "key, value",
    [("max_words", 0), ("max_words", -3), ("lq_size", 0), ("scale", "4"), ("tile", 2),
     ("tile_overlap", 0), ("degradation", "nearest"), ("name", 5), ("source", [])],
)  # fmt: skip
def test_bad_pipeline_json_fields_are_one_line(model_dir, tmp_path, key, value):
    import shutil

    bad = Path(shutil.copytree(model_dir, tmp_path / "m"))
    info = json.loads((bad / "pipeline.json").read_text())
    info[key] = value
    (bad / "pipeline.json").write_text(json.dumps(info))
    with pytest.raises(ModelFormatError) as exc:
        TGSRPipeline.from_pretrained(bad)
    msg = _one_line(exc)
    assert str(bad / "pipeline.json") in msg and key in msg


def test_bad_max_memory_is_the_projects_error(pipe, image):
    for tile in (None, 0):
        with pytest.raises(BadInputError, match="max_memory.*lots") as exc:
            pipe(image, CAPTION, max_memory="lots", tile=tile)
        _one_line(exc)
    for bad in ([1], float("nan"), True):
        with pytest.raises(BadInputError, match="max_memory"):
            pipe(image, CAPTION, max_memory=bad)


@pytest.mark.parametrize("content", ['{"format_version": 1, "words": []}', "\xff\xfe"])
def test_a_bad_vocabulary_names_its_file(model_dir, tmp_path, content):
    import shutil

    bad = Path(shutil.copytree(model_dir, tmp_path / "m"))
    (bad / "vocab.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(ModelFormatError) as exc:
        TGSRPipeline.from_pretrained(bad)
    assert str(bad / "vocab.json") in _one_line(exc)


def test_a_truncated_checkpoint_is_named_as_such(tmp_path):
    run = make_run_dir(tmp_path / "run", scale=4, with_generator=False)
    weights = run / "checkpoints" / "last" / "models.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(ModelFormatError) as exc:
        export_pipeline(run, tmp_path / "model")
    msg = _one_line(exc)
    assert "truncated" in msg and "models.safetensors" in msg and str(weights.parent) in msg
    assert "never saved" not in msg


def test_bad_yaml_in_a_run_names_the_file_once(tmp_path):
    run = make_run_dir(tmp_path / "run", scale=4)
    (run / "config.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ModelFormatError) as exc:
        export_pipeline(run, tmp_path / "model")
    msg = _one_line(exc)
    assert msg.count(str(run / "config.yaml")) == 1 and "invalid YAML" in msg
    (run / "config.yaml").write_text("data:\n  scale: 4\n  no_such_key: 1\n")
    with pytest.raises(ModelFormatError) as exc:
        export_pipeline(run, tmp_path / "model")
    assert _one_line(exc).count(str(run / "config.yaml")) == 1
