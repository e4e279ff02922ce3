"""`tgsr upscale` never loses work: inputs and earlier outputs are not overwritten, results.jsonl
grows line by line (outputs and skipped inputs), bad inputs are found before the model loads,
a stop says what was written, a failed run leaves no folder, Ctrl-C says what it kept; and
`tgsr export`'s hint fits the model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from helpers_cli import one_error_line
from helpers_cli import run_tgsr as tgsr
from helpers_pipeline import make_pipeline_dir, make_run_dir, natural_image
from tgsr.pipeline import TGSRPipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_pipeline_dir(tmp_path_factory.mktemp("safety"), scale=8)


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails the test: the refusals must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(TGSRPipeline, "from_pretrained", refuse)


def _photos(folder, n=2, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(natural_image(size, size, seed=i)).save(folder / f"photo{i}.png")
    return folder


def _truncated_after_header(path, seed=7):
    """A PNG whose header reads but whose pixels are cut short (found only by a full decode)."""
    Image.fromarray(natural_image(12, 12, seed=seed)).save(path)
    path.write_bytes(path.read_bytes()[:60])


def _index(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_output_onto_an_input_is_refused_before_the_model_loads(
    model_dir, tmp_path, monkeypatch, capsys, no_model
):
    photos = _photos(tmp_path / "photos")
    before = _snapshot(photos)
    code, out, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir,
                          "-t", "a red circle", "--out", photos, "--overwrite")  # fmt: skip
    assert code == 2, err
    line = one_error_line(err)
    assert "would overwrite the input" in line and "photo0.png" in line and "1 more" in line
    assert _snapshot(photos) == before  # nothing replaced, nothing added


def test_existing_outputs_need_overwrite_and_the_index_is_appended(
    model_dir, tmp_path, monkeypatch, capsys
):
    photos, out = _photos(tmp_path / "photos"), tmp_path / "out"
    args = ("upscale", photos, "-m", model_dir, "-t", "a red circle", "--out", out)
    code, _, err = tgsr(monkeypatch, capsys, *args)
    assert code == 0, err
    first = _snapshot(out)
    code, _, err = tgsr(monkeypatch, capsys, *args)
    assert code == 2
    line = one_error_line(err)
    assert "already holds 2" in line and "photo0.png" in line and "--overwrite" in line
    assert _snapshot(out) == first  # outputs and index untouched
    code, stdout, err = tgsr(monkeypatch, capsys, *args, "--overwrite")
    assert code == 0 and "wrote 2 image(s)" in stdout, err
    entries = _index(out)
    assert [e["output"] for e in entries] == ["photo0.png", "photo1.png"] * 2  # not truncated


def test_bad_inputs_are_found_from_their_headers_before_the_model_loads(
    model_dir, tmp_path, monkeypatch, capsys, no_model
):
    photos = _photos(tmp_path / "photos", n=3)
    (photos / "photo1.png").write_text("not an image")  # between two good ones
    code, _, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir,
                        "-t", "a red circle", "--out", tmp_path / "out")  # fmt: skip
    assert code == 2 and "photo1.png" in one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_a_stop_mid_run_says_what_was_written_and_the_index_lists_it(
    model_dir, tmp_path, monkeypatch, capsys
):
    photos = _photos(tmp_path / "photos", n=1)
    _truncated_after_header(photos / "photo5.png")  # sorted after photo0
    out = tmp_path / "out"
    code, _, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir,
                        "-t", "a red circle", "--out", out)  # fmt: skip
    assert code == 2
    line = one_error_line(err)
    assert "photo5.png" in line and "1 image(s) already written to" in line
    assert str(out) in line and "--skip-bad" in line
    assert [e["output"] for e in _index(out)] == ["photo0.png"]


def test_skipped_inputs_are_listed_in_the_index(model_dir, tmp_path, monkeypatch, capsys):
    photos = _photos(tmp_path / "photos", n=2)
    (photos / "fake.png").write_text("not an image")  # found from the header
    _truncated_after_header(photos / "photo1b.png")  # found when decoded
    out = tmp_path / "out"
    code, stdout, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir,
                             "-t", "a red circle", "--out", out, "--skip-bad")  # fmt: skip
    assert code == 0, err
    assert "wrote 2 image(s)" in stdout and "skipped 2 bad input(s)" in stdout
    entries = _index(out)
    skipped = {os.path.basename(e["input"]): e["skipped"] for e in entries if "skipped" in e}
    assert set(skipped) == {"fake.png", "photo1b.png"}
    assert "not an image" in skipped["fake.png"] and "truncated" in skipped["photo1b.png"]
    assert sorted(e["output"] for e in entries if "output" in e) == ["photo0.png", "photo1.png"]


@pytest.mark.parametrize("when", ["header", "decode"])
def test_skip_bad_with_nothing_written_exits_2_and_leaves_no_folder(
    when, model_dir, tmp_path, monkeypatch, capsys
):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(2):
        if when == "header":
            (bad / f"x{i}.png").write_text("not an image")
        else:
            _truncated_after_header(bad / f"x{i}.png", seed=i)
    out = tmp_path / "out"
    code, _, err = tgsr(monkeypatch, capsys, "upscale", bad, "-m", model_dir,
                        "-t", "a red circle", "--out", out, "--skip-bad")  # fmt: skip
    assert code == 2
    assert "nothing was written" in one_error_line(err) and "x1.png" in err
    assert not out.exists()


def test_out_under_a_file_and_bad_tiles_are_one_line_before_the_model_loads(
    model_dir, tmp_path, monkeypatch, capsys, no_model
):
    photos = _photos(tmp_path / "photos", n=1)
    (tmp_path / "afile.txt").write_text("a file")
    cases = [
        (["--out", tmp_path / "afile.txt" / "sub"], "afile.txt is a file, not a folder"),
        (["--out", tmp_path / "o", "--tile", "1"], "--tile must be at least 4 LR pixels"),
        (["--out", tmp_path / "o", "--tile", "-3"], "--tile must be at least 4 LR pixels"),
        (["--out", tmp_path / "o", "--tile", "8", "--overlap", "8"], "--overlap must be smaller"),
        (["--out", tmp_path / "o", "--overlap", "0"], "--overlap must be at least 1"),
    ]
    for args, needle in cases:
        code, _, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir, *args)
        assert code == 2 and needle in one_error_line(err), (args, err)
        assert not (tmp_path / "o").exists()


def test_a_run_that_fails_on_its_only_input_leaves_no_folder(
    model_dir, tmp_path, monkeypatch, capsys
):
    _truncated_after_header(tmp_path / "cut.png")
    out = tmp_path / "deep" / "out"
    code, _, err = tgsr(monkeypatch, capsys, "upscale", tmp_path / "cut.png", "-m", model_dir,
                        "-t", "a red circle", "--out", out)  # fmt: skip
    assert code == 2 and "nothing was written" in one_error_line(err)
    assert not (tmp_path / "deep").exists()


def test_progress_lines_off_a_terminal_advance_by_tiles(model_dir, tmp_path, monkeypatch, capsys):
    import tgsr.cli.upscale as inference

    monkeypatch.setattr(inference, "PLAIN_PROGRESS_EVERY_S", 0.0)
    img = tmp_path / "big.png"
    Image.fromarray(natural_image(12, 12)).save(img)
    # --max-memory 1KiB: one tile per generator call, so one progress step per tile
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", model_dir, "-t", "a red circle",
                        "--out", tmp_path / "o", "--tile", "6", "--overlap", "2",
                        "--max-memory", "1KiB")  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("upscale: ")]
    assert any("0/1 output(s), big.png (tile 1/9)" in line for line in lines), err
    assert all("elapsed" in line and "left" in line for line in lines)
    assert lines[-1].startswith("upscale: 1/1 output(s)")


def test_save_attention_skips_an_empty_caption(model_dir, tmp_path, monkeypatch, capsys):
    img = tmp_path / "bird.png"
    Image.fromarray(natural_image(8, 8)).save(img)
    out = tmp_path / "o"
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", model_dir, "--out", out,
                        "-t", "", "-t", "a red circle", "--save-attention")  # fmt: skip
    assert code == 0, err
    assert not (out / "bird_1_attention").exists() and (out / "bird_2_attention").is_dir()
    entries = {e["output"]: e for e in _index(out)}
    assert "attention" not in entries["bird_1.png"]
    assert entries["bird_2.png"]["attention"] == "bird_2_attention"
    assert "no attention maps for 1 output(s) with an empty caption" in err


def test_ctrl_c_in_any_command_says_interrupted(tmp_path, monkeypatch, capsys):
    from tgsr import export as export_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export_pipeline", interrupted)
    code, _, err = tgsr(monkeypatch, capsys, "export", tmp_path, "--out", tmp_path / "m")
    assert code == 130 and err.strip() == "interrupted"


SLOW_UPSCALE = textwrap.dedent(
    """
    import sys, time
    from tgsr.pipeline import TGSRPipeline
    call = TGSRPipeline.__call__

    def slow(self, *args, **kwargs):  # about 0.1 s per output: the run outlasts the signal
        time.sleep(0.1)
        return call(self, *args, **kwargs)

    TGSRPipeline.__call__ = slow
    from tgsr.cli.app import main
    sys.argv = ["tgsr", *sys.argv[1:]]
    main()
    """
)


STOPS = pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


@STOPS
def test_a_stop_signal_during_upscale_says_what_was_written(sig, model_dir, tmp_path):
    """Ctrl-C, and SIGTERM (a timeout, docker stop, SLURM), in a real run in a subprocess."""
    photos = _photos(tmp_path / "photos", n=60)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", SLOW_UPSCALE, "upscale", str(photos), "-m", str(model_dir),
           "-t", "a red circle", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "photo0.png").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr, stderr
    last = [line for line in stderr.splitlines() if line.strip()][-1]  # after any torch warning
    written = sorted(p.name for p in out.glob("*.png"))
    assert 1 <= len(written) < 60
    assert last.startswith(f"interrupted: {len(written)} image(s) already written to {out}")
    assert "results.jsonl" in last
    assert sorted(e["output"] for e in _index(out)) == written  # every output is listed
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def sigterm_raises():
    """SIGTERM raises KeyboardInterrupt during the test: if the code under test does not handle
    it, the test fails instead of pytest being killed."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    yield
    signal.signal(signal.SIGTERM, old)


@STOPS
@pytest.mark.parametrize("during", ["output", "grid"])
def test_a_stop_signal_waits_until_the_output_its_index_line_and_grid_are_written(
    sig, during, model_dir, tmp_path, monkeypatch, capsys, sigterm_raises
):
    """The signal arrives while the first output is saved, or between the last output's index
    line and its job's grid: the run stops right after, with all of them written and listed."""
    import tgsr.cli.upscale as command
    from tgsr.evaluation import figures

    module, name = (command, "save_png") if during == "output" else (figures, "edit_rows")
    write = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), sig)  # delivered at once unless held
        return write(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)
    img, out = tmp_path / "bird.png", tmp_path / "o"
    Image.fromarray(natural_image(8, 8)).save(img)
    code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", model_dir, "--out", out,
                        "-t", "a red circle", "-t", "a big star")  # fmt: skip
    assert code == 130, err
    expected = ["bird_1.png"] if during == "output" else ["bird_1.png", "bird_2.png"]
    assert [e["output"] for e in _index(out)] == expected
    assert sorted(p.name for p in out.glob("bird_?.png")) == expected
    assert (out / "bird_grid.png").is_file() == (during == "grid")
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: {len(expected)} image(s) already written to {out}")


TWO_CAPTIONS = {"image": "a.png", "captions": ["a red circle", "a big star"]}
CLASHES = {  # manifest lines, other inputs, the two inputs named, the name both would write
    # a.png with two captions writes a_1.png, as a_1.png with one (--text) does
    "output": ([TWO_CAPTIONS], ["a_1.png"], ("a.png", "a_1.png"), "a_1.png"),
    "grid": ([TWO_CAPTIONS, {"image": "a_grid.png"}], [], ("a.png", "a_grid.png"), "a_grid.png"),
    "folders": ([], ["a.png", "other"], ("a.png", "other/a.png"), "a.png"),
    # the same image on two manifest lines with other captions: the second replaces the first
    "captions": ([{"image": "a.png", "caption": "a big star"}, {"image": "a.png"}], [],
                 ("list.jsonl:1", "list.jsonl:2"), "a.png"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CLASHES))
def test_outputs_that_would_replace_each_other_are_refused_before_the_model_loads(
    case, model_dir, tmp_path, monkeypatch, capsys, no_model
):
    """Names are checked over everything each input writes, not only over the input's stem."""
    lines, others, (first, second), name = CLASHES[case]
    src = tmp_path / "in"
    (src / "other").mkdir(parents=True)
    for path in ("a.png", "a_1.png", "a_grid.png", "other/a.png"):
        Image.fromarray(natural_image(8, 8)).save(src / path)
    (src / "list.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    inputs = [src / "list.jsonl"] * bool(lines) + [src / x for x in others]
    out = tmp_path / "out"
    code, _, err = tgsr(monkeypatch, capsys, "upscale", *inputs, "-m", model_dir, "--out", out,
                        "-t", "a red circle")  # fmt: skip
    assert code == 2, err
    line = one_error_line(err)
    assert f"both writing {name}" in line or f"both write {name} in --out" in line, line
    assert f"{src / first} and {src / second}" in line or f"{first} and {src / second}" in line
    assert not out.exists()


def test_a_failed_grid_write_leaves_the_previous_grid_whole(tmp_path, monkeypatch):
    from tgsr.evaluation.figures import edit_rows

    path = tmp_path / "bird_grid.png"
    path.write_bytes(b"the previous grid")

    def disk_full(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    lq, sr = natural_image(8, 8), natural_image(64, 64)
    with pytest.raises(OSError, match="No space"):
        edit_rows(lq, ["a red circle", "a big star"], [sr, sr], path)
    assert path.read_bytes() == b"the previous grid"
    assert os.listdir(tmp_path) == ["bird_grid.png"]  # no temporary file left


def test_the_output_size_limit_is_the_pipelines_rule(model_dir, tmp_path, monkeypatch, capsys):
    """Checked from the headers before any work, in the pipeline's words (one rule for both)."""
    import numpy as np

    from tgsr.errors import BadInputError

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(natural_image(8, 8)).save(photos / "a.png")  # x8: 64x64, at the limit
    Image.fromarray(natural_image(9, 8)).save(photos / "b.png")  # x8: 64x72, above it
    with pytest.raises(BadInputError) as exc:
        TGSRPipeline.from_pretrained(model_dir)(
            np.zeros((9, 8, 3), np.uint8), max_output_pixels=4096
        )
    monkeypatch.setattr("tgsr.pipeline.MAX_OUTPUT_PIXELS", 4096)
    out = tmp_path / "out"
    code, _, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir, "--out", out)
    assert code == 2 and not out.exists()
    line = one_error_line(err)
    reason = line.removeprefix(f"error: {photos / 'b.png'}: ")
    assert reason != line and str(exc.value).startswith(reason), (line, str(exc.value))
    code, stdout, err = tgsr(monkeypatch, capsys, "upscale", photos, "-m", model_dir,
                             "--out", out, "--skip-bad")  # fmt: skip
    assert code == 0 and "wrote 1 image(s)" in stdout and "skipped 1" in stdout, err
    assert [e.get("output", e.get("skipped")) for e in _index(out)] == [reason, "a.png"]


@pytest.mark.parametrize("use_text", [True, False])
def test_export_hint_fits_the_model(use_text, tmp_path, monkeypatch, capsys):
    run = make_run_dir(tmp_path / "run", use_text=use_text)
    code, stdout, err = tgsr(monkeypatch, capsys, "export", run, "--out", tmp_path / "m")
    assert code == 0, err
    hint = next(line for line in stdout.splitlines() if "tgsr upscale" in line)
    assert ("--text" in hint) == use_text


def test_image_size_reads_the_header_as_load_image_sees_it(tmp_path):
    from tgsr.data.images import image_size, load_image
    from tgsr.errors import BadInputError

    img = Image.fromarray(natural_image(6, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: load_image returns it 10 high, 6 wide
    img.save(tmp_path / "r.jpg", exif=exif)
    assert image_size(tmp_path / "r.jpg") == (6, 10) == load_image(tmp_path / "r.jpg").shape[1::-1]
    _truncated_after_header(tmp_path / "cut.png")
    assert image_size(tmp_path / "cut.png") == (12, 12)  # the header alone is fine
    (tmp_path / "t.png").write_text("text")
    with pytest.raises(BadInputError, match=r"t\.png: not an image"):
        image_size(tmp_path / "t.png")


def test_overwrite_replaces_an_outputs_attention_maps(model_dir, tmp_path, monkeypatch, capsys):
    img, out = tmp_path / "bird.png", tmp_path / "o"
    Image.fromarray(natural_image(8, 8)).save(img)
    for caption, flags in (("a red and cyan striped circle", ()), ("a big star", ("--overwrite",))):
        code, _, err = tgsr(monkeypatch, capsys, "upscale", img, "-m", model_dir, "--out", out,
                            "-t", caption, "--save-attention", *flags)  # fmt: skip
        assert code == 0, err
    maps = sorted(p.name for p in (out / "bird_attention").iterdir())
    assert maps == ["00_a.png", "01_big.png", "02_star.png", "overview.png"]  # no stale words
