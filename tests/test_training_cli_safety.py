"""`tgsr train` and `tgsr damsm train` never lose or mix runs and say what happened: an --out
holding a run is refused (or replaced with --overwrite), skipped data and a DAMSM that cannot
learn are reported, progress reaches log files and narrow terminals, a resume names what changed
in the config and keeps the old one, a stop by a signal says how to continue, a run already at
max_steps is left alone, and a failed command leaves no folder."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal

import pytest
import yaml
from rich.console import Console

from datafixtures import make_cub, make_jsonl, write_image
from helpers_cli import one_error_line
from helpers_cli import run_tgsr as tgsr
from tgsr.training import common
from tgsr.training.run import Run

TINY = ["data.hr_size=32", "data.scale=4", "data.num_workers=0", "generator.channels=8",
        "train.batch_size=2", "train.mixed_precision=no", "train.channels_last=false",
        "train.log_every=1", "train.image_every=2"]  # fmt: skip
DAMSM_TINY = ["data.hr_size=32", "data.scale=4", "data.num_workers=0",
              "damsm.text_encoder.embedding_dim=16", "damsm.text_encoder.hidden_dim=16",
              "damsm.image_encoder.feature_dim=32", "damsm.image_encoder.light_channels=8",
              "damsm_train.batch_size=4", "damsm_train.mixed_precision=no",
              "damsm_train.log_every=1"]  # fmt: skip


def _sets(*overrides: str) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def train(monkeypatch, capsys, out, *extra, steps=2, config="quickstart_baseline"):
    return tgsr(monkeypatch, capsys, "train", "-c", config, "-o", out, "--cpu",
                *_sets(*TINY, f"train.max_steps={steps}"), *extra)  # fmt: skip


def damsm(monkeypatch, capsys, out, *extra, steps=2, config="quickstart"):
    return tgsr(monkeypatch, capsys, "damsm", "train", "-c", config, "-o", out, "--cpu",
                *_sets(*DAMSM_TINY, f"damsm_train.max_steps={steps}"), *extra)  # fmt: skip


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _summary(folder) -> dict:
    return json.loads((folder / "train_summary.json").read_text())


def _cub_train_set(tmp_path):
    root = tmp_path / "cub"
    make_cub(root)  # train split: 2 images of one class
    return ["data.format=cub", f"data.root={root}", "damsm.image_encoder.kind=light"]


# ---- 1. an --out holding a run ---------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "damsm"])
def test_an_out_holding_a_run_is_refused_and_left_untouched(command, tmp_path, monkeypatch,
                                                            capsys):  # fmt: skip
    run = tmp_path / "run"
    go = train if command == "train" else damsm
    assert go(monkeypatch, capsys, run)[0] == 0
    before = _snapshot(run)
    code, _, err = go(monkeypatch, capsys, run, steps=3)
    assert code == 2
    line = one_error_line(err, alone=True)
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert _snapshot(run) == before  # nothing written, nothing removed


def test_overwrite_replaces_the_old_run_and_keeps_other_files(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    keep = ["--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=3"]
    assert train(monkeypatch, capsys, run, *keep, steps=4)[0] == 0
    assert (run / "samples" / "step_0000004.png").is_file()
    assert (run / "checkpoints" / "step_00000003").is_dir()
    (run / "notes.txt").write_text("mine")
    code, _, err = train(monkeypatch, capsys, run, "--overwrite", steps=2)
    assert code == 0, err
    assert f"replacing the previous run in {run}: removed config.yaml" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000002.png"]
    assert _summary(run)["steps"] == 2 and [s for s, _ in _summary(run)["history"]["train/l2"]] == [
        1,
        2,
    ]
    assert (run / "notes.txt").read_text() == "mine"
    # and --resume now continues this run, not the old one
    code, _, err = train(monkeypatch, capsys, run, "--resume", steps=3)
    assert code == 0 and "at step 2" in err


def test_overwrite_removes_nothing_when_a_check_fails(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert train(monkeypatch, capsys, run)[0] == 0
    before = _snapshot(run)
    code, _, err = train(monkeypatch, capsys, run, "--overwrite", "--set",
                         "data.format=folder", "--set", f"data.root={tmp_path / 'nodata'}")  # fmt: skip
    assert code == 2 and "nodata" in one_error_line(err, alone=True)
    assert _snapshot(run) == before


def test_resume_and_overwrite_together_are_refused(tmp_path, monkeypatch, capsys):
    code, _, err = train(monkeypatch, capsys, tmp_path / "run", "--resume", "--overwrite")
    assert code == 2 and "contradict" in one_error_line(err, alone=True)
    assert not (tmp_path / "run").exists()


def test_the_quickstart_starts_its_stages_over(tmp_path, monkeypatch):
    """Run again into the same --out, the quickstart replaces its stages' runs (it used to mix
    them silently; now it must say so to the trainers, or they would refuse)."""
    import tgsr.quickstart as qs

    seen = {}

    def fake_damsm(cfg, out, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(qs, "train_damsm", fake_damsm)
    with pytest.raises(RuntimeError, match="stop here"):
        qs.run_quickstart(tmp_path / "qs", minutes=1)
    assert seen.get("overwrite") is True


# ---- 2. skipped data entries ----------------------------------------------------------------
def test_skipped_data_entries_are_printed_and_recorded(tmp_path, monkeypatch, capsys):
    manifest = make_jsonl(tmp_path / "data")
    with open(manifest, "a") as f:
        f.write("not json\n")
    write_image(tmp_path / "data" / "imgs" / "p3.jpg", seed=3)
    (tmp_path / "data" / "imgs" / "p3.jpg").write_bytes(b"broken")  # found when decoded
    data = ["data.format=jsonl", f"data.root={manifest}", "data.skip_bad=true"]
    code, _, err = train(monkeypatch, capsys, tmp_path / "run", *_sets(*data), steps=2)
    assert code == 0, err
    assert "skipped 1 bad data entries (first: " in err and "manifest.jsonl:5" in err
    skipped = _summary(tmp_path / "run")["skipped_data"]
    assert skipped["count"] == 2 and "p3.jpg" in skipped["first"][1]


def test_damsm_records_skipped_data_entries(tmp_path, monkeypatch, capsys):
    manifest = make_jsonl(tmp_path / "data")
    with open(manifest, "a") as f:
        f.write("not json\n")
    data = ["data.format=jsonl", f"data.root={manifest}", "data.skip_bad=true",
            "damsm.image_encoder.kind=light", "damsm_train.batch_size=2"]  # fmt: skip
    code, _, err = damsm(monkeypatch, capsys, tmp_path / "d", *_sets(*data), config="cub_x8")
    assert code == 0, err
    assert "skipped 1 bad data entries" in err
    assert _summary(tmp_path / "d")["skipped_data"]["count"] == 1


# ---- 3 and 9. DAMSM: --resume with nothing to resume, a failed start -----------------------
def test_damsm_resume_without_a_checkpoint_is_an_error(tmp_path, monkeypatch, capsys):
    code, _, err = damsm(monkeypatch, capsys, tmp_path / "d", "--resume")
    assert code == 2 and "--resume: no checkpoint in" in one_error_line(err, alone=True)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", ["train", "damsm"])
def test_a_data_set_smaller_than_a_batch_leaves_no_folder(command, tmp_path, monkeypatch, capsys):
    data = _cub_train_set(tmp_path)  # 2 training images
    if command == "train":
        code, _, err = train(
            monkeypatch, capsys, tmp_path / "out", *_sets(*data, "train.batch_size=4")
        )
    else:
        code, _, err = damsm(monkeypatch, capsys, tmp_path / "out", *_sets(*data), config="cub_x8")
    assert code == 2 and "fewer than" in one_error_line(err, alone=True)
    assert not (tmp_path / "out").exists()


# ---- 4. a DAMSM that cannot learn -----------------------------------------------------------
def test_a_single_class_damsm_warns_and_says_so_in_the_summary(tmp_path, monkeypatch, capsys):
    data = [*_cub_train_set(tmp_path), "damsm_train.batch_size=2"]
    code, _, err = damsm(monkeypatch, capsys, tmp_path / "d", *_sets(*data), config="cub_x8")
    assert code == 0, err
    assert "every other caption in the batch is of the same class" in err
    summary = _summary(tmp_path / "d")
    assert summary["single_class_batches"] == 2
    assert any("learns nothing" in w for w in summary["warnings"])
    assert any("learned nothing" in w for w in summary["warnings"])
    assert set(v for _, v in summary["history"]["damsm/loss"]) == {0.0}  # the reason


# ---- 5. progress ----------------------------------------------------------------------------
def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, capsys):
    code, _, err = train(monkeypatch, capsys, tmp_path / "run", "--set", "train.log_every=2",
                         steps=4)  # fmt: skip
    assert code == 0
    lines = [line for line in err.splitlines() if ": step " in line]
    assert [line.split(": step ")[1].split(",")[0] for line in lines] == ["1/4", "2/4", "4/4"]
    assert all("elapsed, ETA " in line and "l2=" in line for line in lines)
    assert "━" not in err  # no bar frame in a log


def test_the_bar_keeps_count_and_eta_before_the_losses_on_80_columns(monkeypatch):
    buf = io.StringIO()
    term = Console(file=buf, width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr(common, "console", term)
    bar = common.make_progress()
    losses = "123 ms/step " + " ".join(f"loss{i}=0.{i}234" for i in range(8))
    bar.add_task("cub_x8", total=200, completed=30, info=losses)
    term.print(bar.get_renderable())
    line = buf.getvalue().splitlines()[0]
    assert line.startswith("cub_x8 ") and "30/200" in line and "ETA" in line
    assert line.index("ETA") < line.index("123 ms/step") and line.rstrip().endswith("…")


# ---- 6. resume with a changed config --------------------------------------------------------
def test_resume_lists_changed_keys_and_keeps_the_replaced_config(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert train(monkeypatch, capsys, run)[0] == 0
    code, _, err = train(monkeypatch, capsys, run, "--resume", "--set", "train.lr=0.0005", steps=3)
    assert code == 0, err
    assert (
        "resume: config differs from the run's: train.lr 0.001 -> 0.0005, train.max_steps 2 -> 3"
        in err
    )
    old = yaml.safe_load((run / "config.resume-2.yaml").read_text())
    new = yaml.safe_load((run / "config.yaml").read_text())
    assert (old["train"]["lr"], old["train"]["max_steps"]) == (0.001, 2)
    assert (new["train"]["lr"], new["train"]["max_steps"]) == (0.0005, 3)


def test_resume_with_other_networks_names_the_config_keys(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert train(monkeypatch, capsys, run)[0] == 0
    before = _snapshot(run)
    code, _, err = train(monkeypatch, capsys, run, "--resume", "--set", "generator.channels=16")
    assert code == 2
    line = one_error_line(err, alone=True)
    assert "generator.channels 8 -> 16" in line and "new --out" in line
    assert _snapshot(run) == before


@pytest.mark.parametrize(("change", "saved_vocab"),
                         [("size", True), ("words", True), ("size", False)])  # fmt: skip
def test_damsm_resume_with_a_rebuilt_vocabulary_says_so(change, saved_vocab, tmp_path, monkeypatch,
                                                       capsys):  # fmt: skip
    data = _cub_train_set(tmp_path)
    root = tmp_path / "cub"
    assert damsm(monkeypatch, capsys, tmp_path / "d", *_sets(*data, "damsm_train.batch_size=2"),
                 config="cub_x8")[0] == 0  # fmt: skip
    if not saved_vocab:  # killed before the session's end: the checkpoint's size tells
        (tmp_path / "d" / "vocab.json").unlink()
    for caption in (root / "text").rglob("*.txt"):
        text = caption.read_text()
        if change == "size" and caption.stem.endswith("0001_1"):
            caption.write_text("a zebra with purple wings\n" + text)  # new words
        elif change == "words":
            caption.write_text(text.replace("crown", "crest"))  # as many words, one other
    code, _, err = damsm(monkeypatch, capsys, tmp_path / "d", "--resume",
                         *_sets(*data, "damsm_train.batch_size=2"), steps=4, config="cub_x8")  # fmt: skip
    assert code == 2
    line = one_error_line(err, alone=True)
    assert "vocabulary is rebuilt from the training captions" in line and "data differs" in line


# ---- 7. a stop by a signal ------------------------------------------------------------------
def _sigterm_at(monkeypatch, step: int):
    advance = Run.advance

    def advance_then_signal(self):
        dt = advance(self)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return dt

    monkeypatch.setattr(Run, "advance", advance_then_signal)


@pytest.mark.parametrize("command", ["train", "damsm"])
def test_a_signal_says_stopped_and_the_printed_command_continues(command, tmp_path, monkeypatch,
                                                                 capsys):  # fmt: skip
    out = tmp_path / "out"
    go = train if command == "train" else damsm
    _sigterm_at(monkeypatch, 2)
    code, _, err = go(monkeypatch, capsys, out, steps=4)
    assert code == 0, err
    last = err.strip().splitlines()[-1]
    assert "stopped by a signal at step 2 of 4" in last, last
    assert _summary(out)["stopped_by"] == "signal"
    again = last.split("continue with: ")[1]
    argv = shlex.split(again)
    assert argv[0] == "tgsr" and argv[-1] == "--resume"
    monkeypatch.undo()
    code, _, err = tgsr(monkeypatch, capsys, *argv[1:])
    assert code == 0, err
    assert _summary(out)["steps"] == 4 and _summary(out)["stopped_by"] == "max_steps"


# ---- 8. resume of a finished run ------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "damsm"])
def test_resume_at_max_steps_trains_nothing_and_rewrites_nothing(command, tmp_path, monkeypatch,
                                                                 capsys):  # fmt: skip
    out = tmp_path / "out"
    go = train if command == "train" else damsm
    assert go(monkeypatch, capsys, out, steps=3)[0] == 0
    before = _snapshot(out)
    code, _, err = go(monkeypatch, capsys, out, "--resume", steps=2)
    assert code == 0, err
    assert "already at step 3 >= " in err and "max_steps 2: nothing to train" in err
    assert "saved" not in err and " -> " not in err.split("nothing to train")[1]
    assert _snapshot(out) == before


@pytest.mark.parametrize("command", ["train", "damsm"])
def test_resume_at_max_steps_writes_a_final_save_that_a_kill_lost(command, tmp_path, monkeypatch,
                                                                  capsys):  # fmt: skip
    """A kill after the final checkpoint but before the model and summary were written: the
    resume writes them from the checkpoint instead of leaving the run without its model."""
    out = tmp_path / "out"
    go = train if command == "train" else damsm
    assert go(monkeypatch, capsys, out, steps=3)[0] == 0
    model = "generator" if command == "train" else "text_encoder"
    saved = (out / model / "model.safetensors").read_bytes()
    shutil.rmtree(out / model)
    (out / "train_summary.json").unlink()
    code, _, err = go(monkeypatch, capsys, out, "--resume", steps=3)
    assert code == 0, err
    assert "nothing to train (its final save is incomplete: writing it again" in err
    assert (out / model / "model.safetensors").read_bytes() == saved
    summary = _summary(out)
    assert summary["steps"] == 3 and summary["stopped_by"] == "max_steps"
    assert [s for s, _ in summary["history"][next(iter(summary["history"]))]][-1] == 3


def test_overwrite_without_a_run_touches_no_file_of_the_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "project"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "photo.jpg").write_bytes(b"mine")
    (out / "vocab.json").write_text("{}")
    code, _, err = train(monkeypatch, capsys, out, "--overwrite")
    assert code == 0, err
    assert "replacing the previous run" not in err
    assert (out / "samples" / "photo.jpg").read_bytes() == b"mine"


def test_overwrite_refuses_a_damsm_that_is_part_of_the_run(tmp_path, monkeypatch, capsys):
    dm = tmp_path / "dm"
    assert damsm(monkeypatch, capsys, dm)[0] == 0
    before = _snapshot(dm)
    code, _, err = tgsr(monkeypatch, capsys, "train", "-c", "quickstart", "-o", dm, "--cpu",
                        "--overwrite", *_sets(*TINY, "train.max_steps=1", f"damsm.path={dm}"))  # fmt: skip
    assert code == 2
    assert "is part of the run" in one_error_line(err, alone=True)
    assert _snapshot(dm) == before
