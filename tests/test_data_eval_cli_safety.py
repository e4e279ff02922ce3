"""`tgsr eval`, `tgsr data check / degrade / synth`: reports that reproduce, outputs that never
land inside the data, bad entries that are counted, and one-line errors (exit 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import pytest

from datafixtures import HR, bird_captions, make, write_image, write_lines
from helpers_cli import one_error_line
from helpers_cli import run_tgsr as run
from helpers_pipeline import make_run_dir
from tgsr.config import DataConfig
from tgsr.data.loader import build_dataset, read_records
from tgsr.errors import BadInputError
from tgsr.text import Vocabulary


def files_under(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ----------------------------------------------------------------------------- tgsr eval
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("evalrun") / "t1", scale=4)


def test_eval_report_reproduces_links_and_records_its_inputs(run_dir, tmp_path, monkeypatch,
                                                              capsys):  # fmt: skip
    args = ["eval", "--model", run_dir, "--out", "ev1", "--no-bicubic",
            "--set", "eval.num_images=4", "--set", "eval.batch_size=4"]  # fmt: skip
    code, out, err = run(monkeypatch, capsys, *args, cwd=tmp_path)
    assert code == 0, err
    command = (
        f"tgsr eval --model {run_dir} --set eval.num_images=4 --set eval.batch_size=4 "
        "--out ev1 --no-bicubic"
    )
    assert f"reproduce with: {command}" in " ".join((out + err).split())
    ev = tmp_path / "ev1"
    md, html = (ev / "report.md").read_text(), (ev / "report.html").read_text()
    assert command in md and command in html
    for text in (md, html):
        assert "ev1/figures" not in text  # links are relative to the report file itself
    assert 'src="figures/comparison.png"' in html and "](figures/comparison.png)" in md
    for src in html.split('src="')[1:]:
        assert (ev / src.split('"')[0]).is_file()
    # only the columns the grid has are captioned (no bicubic, no baseline: one text model)
    assert "LR | TGSR coarse | TGSR fine | GT" in md or "LR | TGSR fine | GT" in md
    assert "bicubic" not in md.split("## Comparison")[1].split("\n\n")[2]
    assert "no-text baseline" not in md
    results = json.loads((ev / "results.json").read_text())
    assert results["inputs"]["command"] == command
    assert results["inputs"]["models"] == {"t1": str(run_dir.resolve())}
    assert results["inputs"]["overrides"] == ["eval.num_images=4", "eval.batch_size=4"]
    assert results["inputs"]["train_damsm"] == str((run_dir / "damsm").resolve())
    assert results["data"]["format"] == "synthetic" and results["data"]["scale"] == 4


def test_eval_command_names_every_option():
    from tgsr.evaluation.evaluate import eval_command

    command = eval_command(["a=runs/x y", "runs/b"], "cub_x8", "data/birds", "ev",
                           "runs/damsm", ["eval.num_images=8"], True)  # fmt: skip
    assert command == (
        "tgsr eval --model 'a=runs/x y' --model runs/b --config cub_x8 --data data/birds "
        "--set eval.num_images=8 --eval-damsm runs/damsm --out ev"
    )


def test_a_failed_eval_leaves_no_output_folder(run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ev2"
    code, _, err = run(monkeypatch, capsys, "eval", "--model", run_dir, "--data",
                       tmp_path / "nonexistent", "--out", out)  # fmt: skip
    assert "nonexistent" in one_error_line(err, code, alone=True)
    assert not out.exists()
    # a data root that exists but cannot be read fails inside the driver: still nothing written
    code, _, err = run(monkeypatch, capsys, "eval", "--model", run_dir, "--out", out,
                       "--set", "data.format=folder", "--data", tmp_path)  # fmt: skip
    assert code == 2, err
    assert not out.exists()


def test_write_report_links_figures_relative_to_the_report(tmp_path, monkeypatch):
    from tgsr.evaluation.report import write_report

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ev" / "figures").mkdir(parents=True)
    write_image(tmp_path / "ev" / "figures" / "comparison.png", 8, 8)
    results = {"models": {"bicubic": {"psnr": 20.0}}}
    caption = "LR | bicubic | GT; each row's caption is under it."
    from pathlib import Path

    figure = (Path("ev/figures/comparison.png"), caption)
    paths = write_report(Path("ev"), results, {"comparison": figure}, {})
    html = paths["html"].read_text()
    assert 'src="figures/comparison.png"' in html and "LR | bicubic | GT;" in html
    assert "](figures/comparison.png)" in paths["md"].read_text()
    assert "TGSR coarse" not in html and "no-text baseline" not in html


# ----------------------------------------------------------------------------- data degrade
def _cub_images(root):
    for i, cls in enumerate(("001.A", "001.A", "002.B")):
        write_image(root / cls / f"bird_{i}.jpg", 16, 24, seed=i)
    return root


def test_degrade_class_subfolders_need_recursive_and_keep_them(tmp_path, monkeypatch, capsys):
    images = _cub_images(tmp_path / "images")
    code, _, err = run(monkeypatch, capsys, "data", "degrade", images, "-s", 4, "-o",
                       tmp_path / "d1")  # fmt: skip
    line = one_error_line(err, code, alone=True)
    assert "no images directly in" in line and "2 subfolders" in line and "--recursive" in line
    assert not (tmp_path / "d1").exists()
    code, _, err = run(monkeypatch, capsys, "data", "degrade", images, "-s", 4, "-o",
                       tmp_path / "d1", "--recursive")  # fmt: skip
    assert code == 0, err
    assert files_under(tmp_path / "d1") == [
        "001.A", "001.A/bird_0.png", "001.A/bird_1.png", "002.B", "002.B/bird_2.png",
    ]  # fmt: skip


@pytest.mark.parametrize("where", [".", "lq", "../fold/lq/x4"])
def test_degrade_refuses_an_out_inside_an_input_folder(where, tmp_path, monkeypatch, capsys):
    fold = tmp_path / "fold"
    write_image(fold / "a.jpg", 16, 16)
    before = files_under(fold)
    code, _, err = run(monkeypatch, capsys, "data", "degrade", fold, "-s", 4, "-o", fold / where)
    assert "input folder" in one_error_line(err, code, alone=True)
    assert files_under(fold) == before


def test_degrade_refuses_to_overwrite_an_input_file(tmp_path, monkeypatch, capsys):
    write_image(tmp_path / "a.png", 16, 16)
    before = (tmp_path / "a.png").read_bytes()
    code, _, err = run(monkeypatch, capsys, "data", "degrade", tmp_path / "a.png", "-s", 4,
                       "-o", tmp_path)  # fmt: skip
    assert "overwrite" in one_error_line(err, code, alone=True)
    assert (tmp_path / "a.png").read_bytes() == before


# ----------------------------------------------------------------------------- data check
def test_check_folder_flags_images_sharing_a_stem(tmp_path, monkeypatch, capsys):
    root, _ = make("folder", tmp_path)
    stem = sorted(p.stem for p in root.glob("*.txt"))[0]
    write_image(root / f"{stem}.jpg", seed=9)
    code, out, _ = run(monkeypatch, capsys, "data", "check", root, "-f", "folder", "--json",
                       "--hr-size", HR)  # fmt: skip
    report = json.loads(out)
    assert code == 1
    assert any("share one caption file" in r and f"{stem}.txt" in r for r in report["bad_records"])
    kept = read_records(DataConfig(format="folder", root=str(root), skip_bad=True), "train", [])
    assert stem not in {r.key for r in kept} and kept
    with pytest.raises(BadInputError, match="share one caption file"):
        read_records(DataConfig(format="folder", root=str(root)), "train")


def _tiny_cub(root, names, captions=None):
    for i, name in enumerate(dict.fromkeys(names)):
        write_image(root / "CUB_200_2011" / "images" / f"{name}.jpg", 60, 80, seed=i)
        write_lines(root / "text" / f"{name}.txt", bird_captions(f"b{i}"))
    (root / "train").mkdir(parents=True)
    with open(root / "train" / "filenames.pickle", "wb") as f:
        pickle.dump(list(names), f, protocol=2)
    return root


def test_check_cub_reports_a_name_listed_twice(tmp_path, monkeypatch, capsys):
    names = ["001.A/a_1", "001.A/a_2", "001.A/a_1"]
    root = _tiny_cub(tmp_path / "cub", names)
    code, out, _ = run(monkeypatch, capsys, "data", "check", root, "-f", "cub", "--json",
                       "--hr-size", HR)  # fmt: skip
    report = json.loads(out)
    assert code == 1 and report["images"] == 2 and report["captions"] == 20
    assert len(report["bad_records"]) == 1 and "listed more than once" in report["bad_records"][0]
    assert "001.A/a_1" in report["bad_records"][0]


def test_invalid_utf8_caption_is_a_bad_entry_in_check_and_loader(tmp_path, monkeypatch, capsys):
    root = _tiny_cub(tmp_path / "cub", ["001.A/a_1", "001.A/a_2"])
    bad = root / "text" / "001.A" / "a_2.txt"
    bad.write_bytes(b"this bird has a red \xff\xfe crown\n")
    code, out, _ = run(monkeypatch, capsys, "data", "check", root, "-f", "cub", "--json",
                       "--hr-size", HR)  # fmt: skip
    report = json.loads(out)
    assert code == 1 and report["images"] == 1
    assert len(report["bad_records"]) == 1 and "not valid UTF-8" in report["bad_records"][0]
    cfg = DataConfig(format="cub", root=str(root), hr_size=HR, scale=4)
    vocab = Vocabulary.build(bird_captions("b0"))
    with pytest.raises(BadInputError, match="a_2.txt: caption file is not valid UTF-8"):
        build_dataset(cfg, vocab, train=True)
    skipping = build_dataset(dataclasses.replace(cfg, skip_bad=True), vocab, train=True)
    assert len(skipping) == 1


# ----------------------------------------------------------------------------- data synth
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--two-object-prob", "1.5", "--two-object-prob must be in [0, 1]"),
        ("--solid-prob", "-0.1", "--solid-prob must be in [0, 1]"),
        ("--seed", "-1", "--seed must be in [0, 2**32)"),
        ("--seed", str(2**32), "--seed must be in [0, 2**32)"),
        ("--scale", "1", "--scale must be 0"),
        ("--num", "0", "--num must be >= 1"),
    ],
)
def test_synth_refuses_out_of_range_options(option, value, message, tmp_path, monkeypatch,
                                            capsys):  # fmt: skip
    out = tmp_path / "syn"
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", out, "--num", 2, option,
                       value)  # fmt: skip
    assert message in one_error_line(err, code, alone=True)
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_synth_unwritable_out_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", locked / "nope",
                           "--num", 2)  # fmt: skip
    finally:
        locked.chmod(0o700)
    assert "cannot write" in one_error_line(err, code, alone=True)


def test_synth_missing_parent_under_proc_is_one_line_exit_2(monkeypatch, capsys):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", "/proc/nope", "--num", 2)
    assert "/proc/nope" in one_error_line(err, code, alone=True)


def test_synth_out_must_be_empty_or_the_same_layout(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    write_lines(mine / "notes.txt", ["my file"])
    code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", mine, "--num", 2)
    assert "not empty" in one_error_line(err, code, alone=True)
    assert files_under(mine) == ["notes.txt"]

    syn = tmp_path / "syn"
    args = ["data", "synth", "--out", syn, "--num", 2, "--scale", 4]
    assert run(monkeypatch, capsys, *args)[0] == 0
    before = {f: (syn / f).read_bytes() for f in files_under(syn) if (syn / f).is_file()}
    assert run(monkeypatch, capsys, *args)[0] == 0  # the same layout again: rewritten, identical
    assert {f: (syn / f).read_bytes() for f in files_under(syn) if (syn / f).is_file()} == before
    for other in (["--num", 3], ["--seed", 1], ["--split", "test"], ["--scale", 8]):
        code, _, err = run(monkeypatch, capsys, "data", "synth", "--out", syn, "--num", 2,
                           "--scale", 4, *other)  # fmt: skip
        assert "same layout" in one_error_line(err, code, alone=True), other
    assert sorted(before) == sorted(
        f for f in files_under(syn) if (syn / f).is_file()
    )  # nothing mixed in
