"""The bad-input catalogue: what a new user gets wrong, across every command, the Python API and
the web demo. Each case must end with the documented exit code, exactly one line on stderr, no
traceback, and no output file written (docs/reliability.md lists the cases)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers_pipeline import make_pipeline_dir, make_run_dir, natural_image
from tgsr.cli.app import main
from tgsr.errors import TGSRError


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A tiny PNG whose header claims ``w`` x ``h`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """Inputs shared by the cases (none of them is an output folder)."""
    root = tmp_path_factory.mktemp("catalogue")
    p = {"root": root}
    p["model"] = make_pipeline_dir(root / "pipe")
    p["run"] = make_run_dir(root / "goodrun")
    Image.fromarray(natural_image(12, 12)).save(root / "ok.png")
    p["ok"] = root / "ok.png"
    (root / "empty.png").write_bytes(b"")
    data = (root / "ok.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "text.png").write_text("this is not an image\n")
    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(root / "nan.tif")
    inf = np.zeros((8, 8), np.float32)
    inf[3, 4] = np.inf
    Image.fromarray(inf, mode="F").save(root / "inf.tif")
    _png_header_only(root / "bomb.png", 40_000, 40_000)
    (root / "nomodel").mkdir()
    (root / "badjson_model").mkdir()
    for item in (p["model"]).iterdir():
        dst = root / "badjson_model" / item.name
        if item.is_dir():
            dst.mkdir()
            for f in item.iterdir():
                dst.joinpath(f.name).write_bytes(f.read_bytes())
        else:
            dst.write_bytes(item.read_bytes())
    (root / "badjson_model" / "pipeline.json").write_text("{ not json")
    (root / "badweights_model").mkdir()
    for item in (root / "badjson_model").iterdir():
        dst = root / "badweights_model" / item.name
        if item.is_dir():
            dst.mkdir()
            for f in item.iterdir():
                dst.joinpath(f.name).write_bytes(f.read_bytes())
    (root / "badweights_model" / "pipeline.json").write_bytes(
        (p["model"] / "pipeline.json").read_bytes()
    )
    w = root / "badweights_model" / "generator" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    (root / "broken.jsonl").write_text('{"image": "ok.png", "caption": "a red circle"}\n{oops\n')
    (root / "noimage.jsonl").write_text('{"caption": "a red circle"}\n')
    (root / "txtonly").mkdir()
    (root / "txtonly" / "a.txt").write_text("a caption")
    (root / "same1").mkdir()
    (root / "same2").mkdir()
    Image.fromarray(natural_image(8, 8)).save(root / "same1" / "x.png")
    Image.fromarray(natural_image(8, 8, 1)).save(root / "same2" / "x.png")
    (root / "dup.yaml").write_text("train:\n  lr: 1.0e-4\n  lr: 2.0e-4\n")
    (root / "invalid.yaml").write_text("train: [unclosed\n")
    (root / "notmapping.yaml").write_text("- just\n- a list\n")
    (root / "afile").write_text("a file where a folder should be")
    # a run whose only checkpoint is damaged, and one with neither generator/ nor checkpoint
    p["damaged_run"] = make_run_dir(root / "damaged", with_generator=False)
    last = p["damaged_run"] / "checkpoints" / "last" / "models.safetensors"
    last.write_bytes(last.read_bytes()[:64])
    p["empty_run"] = make_run_dir(root / "emptyrun", with_generator=False)
    import shutil

    shutil.rmtree(p["empty_run"] / "checkpoints")
    return p


TINY = ["data.hr_size=32", "data.scale=4", "generator.channels=8", "train.batch_size=2"]


# (id, command line with {placeholders} for the paths in ``ws`` and {out}, exit code, text the
# error line must contain); split on spaces (the test paths have none)
CLI_CASES = [
    # ---- upscale ---------------------------------------------------------------------------
    (
        "upscale-missing-file",
        "upscale {root}/nope.png -m {model} -o {out} -t x",
        2,
        "file not found",
    ),
    ("upscale-empty-file", "upscale {root}/empty.png -m {model} -o {out} -t x", 2, "empty.png"),
    (
        "upscale-truncated-png",
        "upscale {root}/truncated.png -m {model} -o {out} -t x",
        2,
        "truncated",
    ),
    ("upscale-text-as-png", "upscale {root}/text.png -m {model} -o {out} -t x", 2, "not an image"),
    ("upscale-float-tiff-nan", "upscale {root}/nan.tif -m {model} -o {out} -t x", 2, "NaN"),
    ("upscale-float-tiff-inf", "upscale {root}/inf.tif -m {model} -o {out} -t x", 2, "infinite"),
    (
        "upscale-decompression-bomb",
        "upscale {root}/bomb.png -m {model} -o {out} -t x",
        2,
        "decompression-bomb",
    ),
    ("upscale-model-missing", "upscale {ok} -m {root}/nomodel_x -o {out} -t x", 2, "nomodel_x"),
    ("upscale-model-empty-folder", "upscale {ok} -m {root}/nomodel -o {out} -t x", 2, "nomodel"),
    (
        "upscale-model-bad-json",
        "upscale {ok} -m {root}/badjson_model -o {out} -t x",
        2,
        "pipeline.json",
    ),
    (
        "upscale-model-truncated-weights",
        "upscale {ok} -m {root}/badweights_model -o {out} -t x",
        2,
        "model.safetensors",
    ),
    ("upscale-scale-mismatch", "upscale {ok} -m {model} -o {out} -t x --scale 4", 2, "--scale 4"),
    ("upscale-no-cuda", "upscale {ok} -m {model} -o {out} -t x --device cuda", 2, "CUDA"),
    ("upscale-negative-tile", "upscale {ok} -m {model} -o {out} -t x --tile -5", 2, "--tile"),
    ("upscale-bad-dtype", "upscale {ok} -m {model} -o {out} -t x --dtype int8", 2, "dtype"),
    (
        "upscale-manifest-broken-json",
        "upscale {root}/broken.jsonl -m {model} -o {out} -t x",
        2,
        "broken.jsonl:2",
    ),
    (
        "upscale-manifest-no-image",
        "upscale {root}/noimage.jsonl -m {model} -o {out} -t x",
        2,
        "image",
    ),
    (
        "upscale-manifest-missing",
        "upscale {root}/nope.jsonl -m {model} -o {out} -t x",
        2,
        "manifest not found",
    ),
    (
        "upscale-folder-without-images",
        "upscale {root}/txtonly -m {model} -o {out} -t x",
        2,
        "no image files",
    ),
    (
        "upscale-two-inputs-one-name",
        "upscale {root}/same1 {root}/same2 -m {model} -o {out} -t x",
        2,
        "x.png",
    ),
    ("upscale-out-is-a-file", "upscale {ok} -m {model} -o {root}/afile -t x", 2, "afile"),
    # ---- train -----------------------------------------------------------------------------
    (
        "train-negative-batch-size",
        "train -c quickstart -o {out} --set train.batch_size=-4",
        2,
        "train.batch_size",
    ),
    ("train-nan-lr", "train -c quickstart -o {out} --set train.lr=nan", 2, "train.lr"),
    ("train-negative-seed", "train -c quickstart -o {out} --set train.seed=-1", 2, "train.seed"),
    ("train-unknown-key", "train -c quickstart -o {out} --set train.bacth_size=4", 2, "bacth_size"),
    (
        "train-wrong-type",
        "train -c quickstart -o {out} --set train.batch_size=abc",
        2,
        "train.batch_size",
    ),
    (
        "train-set-without-equals",
        "train -c quickstart -o {out} --set train.batch_size",
        2,
        "key=value",
    ),
    ("train-unknown-preset", "train -c quikstart -o {out}", 2, "quikstart"),
    ("train-duplicate-yaml-key", "train -c {root}/dup.yaml -o {out}", 2, "duplicate key"),
    ("train-invalid-yaml", "train -c {root}/invalid.yaml -o {out}", 2, "invalid YAML"),
    ("train-yaml-not-a-mapping", "train -c {root}/notmapping.yaml -o {out}", 2, "mapping"),
    (
        "train-impossible-combination",
        "train -c quickstart -o {out} --set generator.use_text=false",
        2,
        "use_text",
    ),
    ("train-text-without-damsm", "train -c quickstart -o {out} {tiny}", 2, "DAMSM"),
    (
        "train-damsm-path-missing",
        "train -c quickstart -o {out} {tiny} --set damsm.path={root}/nodamsm",
        2,
        "nodamsm",
    ),
    (
        "train-data-root-missing",
        "train -c quickstart_baseline -o {out} {tiny} --set data.format=folder --set data.root={root}/nodata",
        2,
        "nodata",
    ),
    (
        "train-resume-nothing",
        "train -c quickstart_baseline -o {out} --resume {tiny}",
        2,
        "no checkpoint",
    ),
    (
        "train-resume-only-damaged",
        "train -c quickstart_baseline -o {damaged_run} --resume {tiny}",
        2,
        "no usable checkpoint",
    ),
    # ---- damsm train -----------------------------------------------------------------------
    (
        "damsm-zero-batch",
        "damsm train -c quickstart -o {out} --set damsm_train.batch_size=0",
        2,
        "damsm_train.batch_size",
    ),
    (
        "damsm-dropout-above-one",
        "damsm train -c quickstart -o {out} --set damsm.text_encoder.dropout=1.5",
        2,
        "dropout",
    ),
    (
        "damsm-feature-dim-mismatch",
        "damsm train -c quickstart -o {out} --set damsm.image_encoder.feature_dim=7",
        2,
        "feature_dim",
    ),
    (
        "damsm-data-root-missing",
        "damsm train -c cub_x8 -o {out} --set data.root={root}/birds",
        2,
        "birds",
    ),
    # ---- eval ------------------------------------------------------------------------------
    ("eval-model-missing", "eval -m {root}/norun -o {out}", 2, "norun"),
    ("eval-model-not-a-run", "eval -m {root}/txtonly -o {out}", 2, "txtonly"),
    ("eval-bad-override", "eval -m {run} -o {out} --set eval.batch_size=0", 2, "eval.batch_size"),
    ("eval-damsm-missing", "eval -m {run} -o {out} --eval-damsm {root}/noeval", 2, "noeval"),
    # ---- data check / degrade --------------------------------------------------------------
    ("data-check-missing-root", "data check {root}/nodata --format folder", 2, "nodata"),
    ("data-check-unknown-format", "data check {root} --format pdf", 2, "pdf"),
    (
        "data-degrade-corrupt-image",
        "data degrade {root}/truncated.png --out {out} --scale 4",
        2,
        "truncated",
    ),
    ("data-degrade-nan-tiff", "data degrade {root}/nan.tif --out {out} --scale 4", 2, "NaN"),
    ("data-degrade-bad-scale", "data degrade {ok} --out {out} --scale 0", 2, "--scale"),
    (
        "data-degrade-bad-method",
        "data degrade {ok} --out {out} --scale 4 --method nearest",
        2,
        "--method",
    ),
    # ---- export ----------------------------------------------------------------------------
    ("export-run-missing", "export {root}/norun -o {out}", 2, "norun"),
    ("export-run-without-weights", "export {empty_run} -o {out}", 2, "checkpoints"),
    ("export-damaged-checkpoint", "export {damaged_run} -o {out}", 2, "checkpoint"),
]
TINY_SETS = " ".join(f"--set {s}" for s in TINY)


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, ws, tmp_path, monkeypatch, capsys):
    name, command, code, needle = case
    out = tmp_path / "out"
    before = {p: p.stat().st_mtime_ns for p in _files_under(ws["root"])}
    argv = command.format(**ws, out=out, tiny=TINY_SETS).split()
    monkeypatch.setattr(sys, "argv", ["tgsr", *argv])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    err = captured.err
    assert exc.value.code == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # exactly one line
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert needle in lines[0], lines[0]
    assert not _files_under(out), _files_under(out)  # no partial output
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written here either
    after = {p: p.stat().st_mtime_ns for p in _files_under(ws["root"])}
    assert after == before  # inputs untouched, nothing added beside them


# ---- the Python API: one-line TGSRError, nothing printed ---------------------------------------
def _api_cases():
    import torch

    def pipe(ws):
        from tgsr import TGSRPipeline

        return TGSRPipeline.from_pretrained(ws["model"])

    nan_pil = Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F")
    return [
        (
            "api-nan-tensor",
            lambda w: pipe(w)(torch.full((3, 8, 8), float("nan")), "a red circle"),
            "NaN",
        ),
        (
            "api-inf-tensor",
            lambda w: pipe(w)(torch.full((1, 3, 8, 8), float("inf")), "a red circle"),
            "infinite",
        ),
        ("api-nan-pil-float-image", lambda w: pipe(w)(nan_pil, "a red circle"), "NaN"),
        (
            "api-float-numpy",
            lambda w: pipe(w)(np.zeros((8, 8, 3), np.float32), "a circle"),
            "uint8",
        ),
        (
            "api-wrong-shape",
            lambda w: pipe(w)(np.zeros((8, 8, 5), np.uint8), "a circle"),
            "(H, W, 3)",
        ),
        ("api-empty-image", lambda w: pipe(w)(np.zeros((0, 8, 3), np.uint8), "a circle"), "empty"),
        (
            "api-caption-not-a-string",
            lambda w: pipe(w)(np.zeros((8, 8, 3), np.uint8), 123),
            "string",
        ),
        ("api-model-missing", lambda w: pipe({"model": w["root"] / "nope"}), "nope"),
        (
            "api-load-image-nan",
            lambda w: __import__("tgsr.data.images", fromlist=["x"]).load_image(
                w["root"] / "nan.tif"
            ),
            "NaN",
        ),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case, ws, capsys):
    name, call, needle = case
    with pytest.raises(TGSRError) as exc:
        call(ws)
    text = str(exc.value)
    assert "\n" not in text and needle in text, text
    assert capsys.readouterr().err == ""


# ---- the web demo: a gr.Error with one line, before any model work -------------------------------
DEMO_CASES = [
    ("demo-no-image", lambda w: (None, "a red circle"), "upload an image"),
    (
        "demo-image-too-large",
        lambda w: (np.zeros((300, 20, 3), np.uint8), "a circle"),
        "up to 256x256",
    ),
    (
        "demo-too-many-captions",
        lambda w: (np.zeros((8, 8, 3), np.uint8), "a\nb\nc\nd\ne"),
        "at most 4",
    ),
    ("demo-caption-too-long", lambda w: (np.zeros((8, 8, 3), np.uint8), "x" * 201), "limit is 200"),
    (
        "demo-upload-bomb-header",
        lambda w: (str(w["root"] / "bomb.png"), "a circle"),
        "up to 256x256",
    ),
    ("demo-upload-nan-tiff", lambda w: (str(w["root"] / "nan.tif"), "a circle"), "NaN"),
    (
        "demo-upload-not-an-image",
        lambda w: (str(w["root"] / "text.png"), "a circle"),
        "not an image",
    ),
    (
        "demo-upload-truncated",
        lambda w: (str(w["root"] / "truncated.png"), "a circle"),
        "truncated",
    ),
]


@pytest.fixture(scope="module")
def demo_fn(ws):
    pytest.importorskip("gradio")
    from tgsr import TGSRPipeline
    from tgsr.demo.app import build_demo

    demo = build_demo(TGSRPipeline.from_pretrained(ws["model"]), examples=False)
    fns = [f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "upscale"]
    assert len(fns) == 1
    return fns[0]


@pytest.mark.parametrize("case", DEMO_CASES, ids=[c[0] for c in DEMO_CASES])
def test_demo_bad_input(case, demo_fn, ws, monkeypatch):
    import gradio as gr

    import tgsr.data.images

    decoded = []
    real = tgsr.data.images.load_image
    monkeypatch.setattr(tgsr.data.images, "load_image", lambda p: decoded.append(p) or real(p))
    name, args, needle = case
    with pytest.raises(gr.Error) as exc:
        demo_fn(*args(ws))
    if name == "demo-upload-bomb-header":
        assert decoded == []  # refused from the header, before any decoding
    text = str(exc.value.message)
    assert "\n" not in text and needle in text, text


def test_the_catalogue_has_at_least_forty_cases():
    assert len(CLI_CASES) + len(API_CASES) + len(DEMO_CASES) >= 40


@pytest.mark.slow
def test_demo_example_files_are_removed_when_the_process_exits(ws):
    """The example LR images of the demo go to a temporary folder that is removed at exit, not
    left behind in /tmp at every launch."""
    pytest.importorskip("gradio")
    code = (
        "import sys\n"
        "from tgsr import TGSRPipeline\n"
        "from tgsr.demo.app import build_demo\n"
        "demo = build_demo(TGSRPipeline.from_pretrained(sys.argv[1]), examples=True)\n"
        "folder = demo.tgsr_examples_dir.name\n"
        "import os\n"
        "print(folder, len([f for f in os.listdir(folder) if f.endswith('.png')]))\n"
    )
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "-c", code, str(ws["model"])], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    folder, n_png = done.stdout.split()[-2:]
    assert Path(folder).name.startswith("tgsr-demo-") and int(n_png) >= 1
    assert not Path(folder).exists()


@pytest.mark.slow
def test_a_demo_server_stopped_by_sigterm_removes_its_example_files(ws, tmp_path):
    """`tgsr demo` ended by SIGTERM (systemd, docker stop) runs its exit handlers like Ctrl-C."""
    pytest.importorskip("gradio")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "tgsr.cli.app", "demo", "--model",
                             str(ws["model"]), "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("tgsr-demo-*/*.png")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(tmp_path.glob("tgsr-demo-*/*.png")), "the demo never wrote its examples"
        time.sleep(1.0)  # into the server's blocking loop
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert not list(tmp_path.glob("tgsr-demo-*"))
