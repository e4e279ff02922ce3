"""The web demo without a browser: its handler, components and wiring on tiny random models."""

from __future__ import annotations

import logging
import socket

import numpy as np
import pytest
from PIL import Image

from helpers_cli import one_error_line, run_tgsr
from helpers_pipeline import make_pipeline_dir, natural_image

gr = pytest.importorskip("gradio")

pytestmark = pytest.mark.filterwarnings("ignore::Warning")  # CaptionWarning, gradio notes


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    from tgsr.pipeline import TGSRPipeline

    root = tmp_path_factory.mktemp("demo")
    text = make_pipeline_dir(root / "text", scale=4)
    plain = make_pipeline_dir(root / "plain", scale=4, use_text=False)
    return {
        "text": TGSRPipeline.from_pretrained(text),
        "plain": TGSRPipeline.from_pretrained(plain),
        "dir": text,
    }


@pytest.fixture(scope="module")
def demos(pipes):
    from tgsr.demo.app import build_demo

    return {k: build_demo(pipes[k]) for k in ("text", "plain")}


@pytest.fixture(scope="module")
def upscale(pipes):
    from tgsr.demo.app import make_upscale

    return make_upscale(pipes["text"], gr)


@pytest.fixture
def lq_png(tmp_path):
    path = tmp_path / "lq.png"
    Image.fromarray(natural_image(12, 16, seed=3)).save(path)
    return str(path)


def by_id(demo, elem_id: str):
    (found,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    return found


@pytest.mark.parametrize("elem_id", ["attention", "edits"])
def test_galleries_send_lossless_png(demos, elem_id, tmp_path):
    """WebP (gradio's default) greyed out one-pixel yellow/blue stripes."""
    gallery = by_id(demos["text"], elem_id)
    assert gallery.format == "png"
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, 0::2] = (255, 220, 0)
    stripes[:, 1::2] = (0, 60, 255)
    (item,) = gallery.postprocess([(stripes, "stripes")]).root
    path = item.image.path
    assert path.endswith(".png")
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), stripes)


def test_unknown_word_warning_is_not_an_html_tag(upscale, lq_png):
    *_, notes = upscale(lq_png, "a zzqx circle")
    assert "<unk>" not in notes and "&lt;unk&gt;" in notes and "zzqx" in notes


def test_a_file_that_is_not_an_image_gets_the_demos_message(demos, upscale, tmp_path):
    """gradio's gr.Image opened the upload itself and failed with its own error and paths."""
    from gradio.data_classes import ImageData

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    path = by_id(demos["text"], "lq").preprocess(ImageData(path=str(bad), orig_name="notes.png"))
    assert path == str(bad)  # undecoded: the handler reads it
    with pytest.raises(gr.Error) as exc:
        upscale(path, "a circle")
    assert exc.value.message == "This file is not an image the demo can read."


def test_bad_input_logs_one_line_without_traceback(upscale, caplog):
    with caplog.at_level(logging.WARNING, logger="tgsr.demo"):
        with pytest.raises(gr.Error) as exc:
            upscale(np.zeros((8, 8, 3), np.uint8), "a\nb\nc\nd\ne")
    assert exc.value.print_exception is False  # gradio prints no traceback
    (record,) = caplog.records
    assert "at most 4 captions" in record.getMessage() and "\n" not in record.getMessage()


def test_a_click_clears_the_previous_outputs_first(demos):
    """An error then leaves no earlier image or "Output: ..." note on screen."""
    from tgsr.demo.app import clear_outputs

    demo = demos["text"]
    fns = list(demo.fns.values())
    (run,) = [f for f in fns if f.name == "upscale"]
    first = demo.fns[run.trigger_after]
    assert not run.trigger_only_on_success  # runs after the clearing step
    assert [o._id for o in first.outputs] == [o._id for o in run.outputs]
    bicubic, sr, attention, edits, notes = first.fn()
    assert bicubic is None and sr is None and attention == [] and notes == ""
    assert edits.value == [] or edits.value is None or edits.value.root == []
    assert clear_outputs(gr)[4] == ""


@pytest.mark.parametrize("caption", ["!!! ...", "  ,;  "])
def test_a_punctuation_only_caption_is_empty(upscale, lq_png, caption):
    *_, attention, _, notes = upscale(lq_png, caption)
    assert "Empty caption" in notes and attention == []


def test_an_empty_caption_among_several_is_labelled(upscale, lq_png):
    *_, edits, notes = upscale(lq_png, "a red circle\n?!")
    labels = [label for _, label in edits.value.root] if hasattr(edits.value, "root") else None
    labels = labels or [c for _, c in edits.constructor_args["value"]]
    assert labels == ["a red circle", "(empty caption)"]
    assert "Caption 2 has no words" in notes


def test_word_maps_share_one_scale_like_the_cli(upscale, lq_png, pipes):
    """Not min-max per word: "a"/"and" stayed bright noise; the CLI writes raw [0, 1] maps."""
    import torch

    from tgsr.demo.app import attention_overlay
    from tgsr.pipeline import attention_to_image

    image = np.zeros((8, 8, 3), np.uint8)
    attn = torch.full((8, 8), 0.1)
    attn[0, 0] = 0.2
    expected = np.floor(0.5 * attention_to_image(attn, (8, 8)).astype(np.float32) + 0.5)
    assert np.array_equal(attention_overlay(image, attn), expected.astype(np.uint8))
    *_, attention, _, notes = upscale(lq_png, "a red and cyan striped circle")
    assert len(attention) == 6 and "share one scale" in notes


def test_every_word_map_fits_without_an_inner_scroll(demos):
    gallery = by_id(demos["text"], "attention")
    assert gallery.height == "auto" and gallery.object_fit == "contain"
    assert by_id(demos["text"], "edits").object_fit == "contain"


def test_a_no_text_model_shows_no_text_parts(demos, pipes, lq_png):
    from tgsr.demo.app import make_upscale

    demo = demos["plain"]
    assert by_id(demo, "caption").visible is False
    assert by_id(demo, "attention").visible is False
    assert by_id(demo, "sr").label == "Super-resolution (no-text model)"
    header = next(b for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.value)
    assert "no-text model" in header.value and "word" not in header.value
    assert len(by_id(demo, "examples")._components) == 1  # images only, no captions
    upscale = make_upscale(pipes["plain"], gr)
    bicubic, sr, attention, edits, notes = upscale(lq_png, "a red circle\na blue square")
    assert sr.shape == (48, 64, 3) and attention == [] and edits.visible is False
    assert "caption" not in notes.lower()


def test_the_text_model_page_keeps_its_text_parts(demos):
    demo = demos["text"]
    assert by_id(demo, "caption").visible is not False
    assert by_id(demo, "sr").label == "TGSR"
    assert len(by_id(demo, "examples")._components) == 2


def test_cli_refuses_a_non_positive_upload_limit(pipes, monkeypatch, capsys):
    for bad in ("-1", "0", "nan"):
        code, _, err = run_tgsr(monkeypatch, capsys, "demo", "--model", pipes["dir"],
                                "--max-upload-mb", bad)  # fmt: skip
        assert "--max-upload-mb must be a positive number" in one_error_line(err, code)


def test_cli_names_a_busy_port(pipes, monkeypatch, capsys):
    monkeypatch.setattr("tgsr.demo.app.render_examples", lambda *a, **k: [])  # faster
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = run_tgsr(monkeypatch, capsys, "demo", "--model", pipes["dir"],
                                "--port", port)  # fmt: skip
    line = one_error_line(err, code)
    assert line == f"error: port {port} is in use: pass another --port (0: any free port)"
