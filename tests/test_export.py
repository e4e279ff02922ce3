"""`tgsr export`: run folder -> pipeline folder; the padded text-encoder forward; ONNX parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers_pipeline import make_run_dir, natural_image, tiny_components, tiny_config
from tgsr.cli.app import app
from tgsr.errors import ModelFormatError, TGSRError
from tgsr.export import export_onnx, export_pipeline
from tgsr.pipeline import TGSRPipeline

CAPTION = "a red and cyan striped circle"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("export") / "run", scale=4)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_export_strips_training_parts(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["export", str(run_dir), "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert "tgsr upscale" in result.output and "tgsr demo" in result.output
    files = _files(tmp_path / "model")
    assert files == [
        "generator/config.json",
        "generator/model.safetensors",
        "pipeline.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "vocab.json",
    ]
    info = json.loads((tmp_path / "model" / "pipeline.json").read_text())
    assert {k: info[k] for k in ("format_version", "scale", "lq_size", "max_words", "use_text")} == {
        "format_version": 1, "scale": 4, "lq_size": 16, "max_words": 8, "use_text": True}  # fmt: skip
    # the exported generator is the EMA one written to RUN/generator
    direct = TGSRPipeline.from_pretrained(run_dir)
    exported = TGSRPipeline.from_pretrained(tmp_path / "model")
    img = natural_image(8, 8)
    assert np.array_equal(
        np.asarray(direct(img, CAPTION).image), np.asarray(exported(img, CAPTION).image)
    )


def test_export_falls_back_to_the_checkpoint(tmp_path):
    run = make_run_dir(tmp_path / "run", scale=4, with_generator=False)
    out = export_pipeline(run, tmp_path / "model")
    assert (out / "generator" / "model.safetensors").is_file()
    TGSRPipeline.from_pretrained(out)(natural_image(8, 8), CAPTION)


def test_export_refuses_bad_targets(run_dir, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(TGSRError, match="not empty"):
        export_pipeline(run_dir, tmp_path / "busy")
    with pytest.raises(TGSRError, match="differ"):
        export_pipeline(run_dir, run_dir)
    with pytest.raises(ModelFormatError, match="no config.yaml"):
        export_pipeline(tmp_path / "busy", tmp_path / "out")


def test_padded_text_encoder_equals_packed():
    cfg = tiny_config(4)
    _, encoder, _, _, vocab = tiny_components(cfg, seed=3)
    torch.manual_seed(0)
    t = 8
    lengths = torch.tensor([8, 1, 5, 0, 3, 7])
    tokens = torch.randint(2, len(vocab), (6, t))
    tokens[torch.arange(t)[None] >= lengths[:, None]] = 0
    with torch.no_grad():
        words, sentence = encoder(tokens, lengths)
        pw, ps = encoder.forward_padded(tokens, lengths)
    assert torch.allclose(words, pw, atol=1e-6) and torch.allclose(sentence, ps, atol=1e-6)
    assert (pw[3] == 0).all() and (ps[3] == 0).all()  # empty caption: zeros, as packed


@pytest.mark.parametrize(
    "use_text,arch,extra",
    [(True, "paper", {}), (False, "paper", {}),
     (True, "released", {"refine_input": "highpass", "coord_channels": True}),
     (True, "paper", {"subpixel_coords": True, "word_norm": True, "word_adapter": "mlp",
                      "coord_channels": True, "text_fusion": "concat_mul",
                      "activation": "leaky_relu", "tam_coords": True})],
)  # fmt: skip
def test_onnx_parity(tmp_path, use_text, arch, extra):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    run = make_run_dir(tmp_path / "run", scale=4, use_text=use_text, arch=arch, **extra)
    pipe = TGSRPipeline.from_pretrained(run, dtype="float32")  # parity with the float32 graph
    paths = export_onnx(pipe, tmp_path / "onnx")
    assert not any(m.training for m in pipe.generator.modules())  # export leaves eval mode
    expected = ["text_encoder.onnx", "generator.onnx"] if use_text else ["generator.onnx"]
    assert [p.name for p in paths] == expected
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    cpu = ["CPUExecutionProvider"]
    sess = {p.stem: ort.InferenceSession(str(p), opts, providers=cpu) for p in paths}
    # batch 3 and 10x12 differ from the batch 2, 16x16 example the graph was traced with
    images = [natural_image(10, 12, seed=s) for s in range(3)]
    lq = torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 255 for a in images])
    captions = [CAPTION, "a blue square", ""]
    feed = {"lq": lq.numpy()}
    if use_text:
        feats, *_ = pipe.encode_text(captions)
        enc = [pipe.vocab.encode(c, pipe.max_words) for c in captions]
        tokens = np.array([e.ids for e in enc], dtype=np.int64)
        lengths = np.array([e.length for e in enc], dtype=np.int64)
        words, sentence = sess["text_encoder"].run(None, {"tokens": tokens, "lengths": lengths})
        assert np.abs(words - feats.words.numpy()).max() <= 1e-3
        assert np.abs(sentence - feats.sentence.numpy()).max() <= 1e-3
        feed.update(words=words, token_mask=feats.token_mask.numpy())
    outs = sess["generator"].run(None, feed)
    with torch.no_grad():
        text_args = () if not use_text else (feats.words, feats.sentence, feats.token_mask)
        ref = pipe.generator(lq, *text_args)
    assert outs[0].shape == (3, 3, 40, 48)
    assert np.abs(outs[0] - ref.sr.numpy()).max() <= 1e-3
    if use_text:
        assert np.abs(outs[1] - ref.attn[-1].numpy()).max() <= 1e-3
    # a side of one pixel (its coordinate channels once divided by zero in the graph: NaN)
    thin = {k: v[:1] for k, v in feed.items()} | {"lq": lq[:1, :, :1, :5].numpy()}
    with torch.no_grad():
        ref = pipe.generator(lq[:1, :, :1, :5], *(t[:1] for t in text_args))
    out = sess["generator"].run(None, thin)[0]
    assert np.isfinite(out).all() and np.abs(out - ref.sr.numpy()).max() <= 1e-3


def test_export_over_a_pipeline_keeps_the_users_own_files(run_dir, tmp_path):
    out = tmp_path / "model"
    export_pipeline(run_dir, out, onnx=False)
    (out / "README.md").write_text("my model card")
    (out / "extras").mkdir()
    (out / "extras" / "a.txt").write_text("a")
    export_pipeline(run_dir, out)
    assert (out / "README.md").read_text() == "my model card"
    assert (out / "extras" / "a.txt").read_text() == "a"
    assert (out / "generator" / "model.safetensors").is_file()


def test_export_into_the_current_folder_is_one_line(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "model"
    export_pipeline(run_dir, out)
    monkeypatch.chdir(out)
    with pytest.raises(TGSRError, match="is the current folder"):
        export_pipeline(run_dir, ".")
    assert (out / "pipeline.json").is_file()
    monkeypatch.chdir(tmp_path)  # a relative --out from elsewhere works
    assert export_pipeline(run_dir, "model2") and (tmp_path / "model2" / "pipeline.json").is_file()
