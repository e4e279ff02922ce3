"""Crash-safe checkpoints: a failed or killed write leaves the previous checkpoint loadable, a
damaged one is found (one line) and ``--resume`` takes the newest one that verifies; only the
newest ``keep`` are kept."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import tgsr.training.checkpoint as ck
from tgsr.errors import ModelFormatError, TGSRError
from tgsr.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 8)


def _save(folder: Path, step: int, keep: int = 2) -> torch.nn.Module:
    m = _model(step)
    opt = torch.optim.Adam(m.parameters())
    save_checkpoint(folder, {"m": m}, {"o": opt}, {"step": step, "elapsed": 0.0}, keep=keep)
    return m


def _load_step(folder: Path) -> int:
    fresh = _model(999)
    state = load_checkpoint(folder, {"m": fresh}, restore_rng=False)
    assert torch.equal(fresh.weight, _model(state["step"]).weight)  # the weights of that step
    return state["step"]


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


@pytest.mark.parametrize("where", ["models", "optimizers", "state"])
def test_a_full_disk_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch, where):
    last = tmp_path / "checkpoints" / "last"
    _save(last, 1)

    def enospc(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "models":
        monkeypatch.setattr(ck, "save_file", enospc)
    elif where == "optimizers":
        monkeypatch.setattr(ck.torch, "save", enospc)
    else:
        monkeypatch.setattr(ck.json, "dumps", enospc)
    with pytest.raises(TGSRError) as exc:
        _save(last, 2)
    assert "No space left on device" in _one_line(exc.value)
    assert "previous checkpoint" in str(exc.value)
    assert _load_step(last) == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]  # no temporary folder left


def test_a_real_full_tmpfs_leaves_the_previous_checkpoint(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        small = torch.nn.Linear(16, 16)  # ~1 KB of weights: fits
        save_checkpoint(mnt / "last", {"m": small}, {}, {"step": 1, "elapsed": 0.0})
        big = torch.nn.Linear(256, 256)  # 256 KB: does not fit in 64 KB
        with pytest.raises(TGSRError, match="No space left on device"):
            save_checkpoint(mnt / "last", {"m": big}, {}, {"step": 2, "elapsed": 0.0})
        fresh = torch.nn.Linear(16, 16)
        assert load_checkpoint(mnt / "last", {"m": fresh}, restore_rng=False)["step"] == 1
        assert torch.equal(fresh.weight, small.weight)
        assert [p.name for p in mnt.iterdir()] == ["last"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_kill_between_the_two_renames_leaves_a_loadable_older_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root / "last", 1)
    _save(root / "last", 2)
    real = os.replace
    calls = []

    def dies_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # after last/ -> step_2/, before the new folder -> last/
            raise KeyboardInterrupt  # what a kill looks like from here: nothing after it runs
        real(src, dst)

    monkeypatch.setattr(ck.os, "replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        _save(root / "last", 3)
    monkeypatch.setattr(ck.os, "replace", real)
    assert not (root / "last").exists()
    folder, state = latest_checkpoint(root)
    assert folder.name == "step_00000002" and _load_step(folder) == 2
    _save(root / "last", 3)  # the next save cleans up and carries on
    assert _load_step(root / "last") == 3
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_sigkill_during_writes_always_leaves_a_loadable_checkpoint(tmp_path):
    """A process writing 1.6 MB checkpoints in a loop is killed 3 times at arbitrary moments."""
    root = tmp_path / "checkpoints"
    script = (
        "import sys, torch\n"
        "from tgsr.training.checkpoint import save_checkpoint\n"
        "step = int(sys.argv[2])\n"
        "while True:\n"
        "    step += 1\n"
        "    torch.manual_seed(step)\n"
        "    m = torch.nn.Linear(400, 1000)\n"
        "    save_checkpoint(sys.argv[1], {'m': m}, {}, {'step': step, 'elapsed': 0.0}, keep=2)\n"
    )
    steps_seen = []
    for kill in range(3):
        found = latest_checkpoint(root)
        start = found[1]["step"] if found else 0
        proc = subprocess.Popen([sys.executable, "-c", script, str(root / "last"), str(start)])
        deadline = time.time() + 120
        while time.time() < deadline:  # let it write a few, then kill at an arbitrary moment
            found = latest_checkpoint(root)
            if found and found[1]["step"] >= start + 2:
                break
            time.sleep(0.01)
        time.sleep(0.02 * kill)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        folder, state = latest_checkpoint(root)
        fresh = torch.nn.Linear(400, 1000)
        load_checkpoint(folder, {"m": fresh}, restore_rng=False)
        torch.manual_seed(state["step"])
        assert torch.equal(fresh.weight, torch.nn.Linear(400, 1000).weight)
        steps_seen.append(state["step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "state"])
def test_a_damaged_last_is_one_line_and_resume_takes_the_previous(tmp_path, damage):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        _save(root / "last", step, keep=3)
    weights = root / "last" / "models.safetensors"
    if damage == "truncate":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0x01
        weights.write_bytes(bytes(data))
    elif damage == "delete":
        (root / "last" / "optimizers.pt").unlink()
    else:
        (root / "last" / "state.json").write_text('{"format_version": 2, "step": ')
    with pytest.raises(ModelFormatError) as exc:
        verify_checkpoint(root / "last")
    line = _one_line(exc.value)
    assert str(root / "last") in line
    assert {"truncate": "truncated", "flip": "SHA-256", "delete": "missing",
            "state": "corrupt"}[damage] in line  # fmt: skip
    warnings = []
    folder, state = latest_checkpoint(root, warn=warnings.append)
    assert folder.name == "step_00000002" and state["step"] == 2
    assert len(warnings) == 1 and "skipping a damaged checkpoint" in warnings[0]


@pytest.mark.slow
def test_only_damaged_checkpoints_is_a_clear_error(tmp_path):
    from tgsr.config import load_config
    from tgsr.training.trainer import fit

    run = tmp_path / "run"
    _save(run / "checkpoints" / "last", 1)
    (run / "checkpoints" / "last" / "models.safetensors").write_bytes(b"\0" * 10)
    cfg = load_config("quickstart_baseline", ["data.hr_size=32", "data.scale=4",
                                              "generator.channels=8", "train.batch_size=2"])  # fmt: skip
    with pytest.raises(TGSRError, match="no usable checkpoint"):
        fit(cfg, run, resume=True, progress=False, cpu=True)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_only_the_newest_keep_checkpoints_stay(tmp_path, keep):
    root = tmp_path / "checkpoints"
    for step in range(1, 7):
        _save(root / "last", step, keep=keep)
    names = sorted(p.name for p in root.iterdir())
    expected = sorted(["last"] + [f"step_{s:08d}" for s in range(6 - keep + 1, 6)])
    assert names == expected
    assert _load_step(root / "last") == 6
    _save(root / "last", 6, keep=keep)  # the same step again replaces it, no duplicate
    assert sorted(p.name for p in root.iterdir()) == expected


def test_resume_of_a_run_with_a_truncated_last_continues_from_the_previous(tmp_path):
    from tgsr.config import load_config
    from tgsr.training.trainer import fit

    sets = ["data.hr_size=32", "data.scale=4", "generator.channels=8", "train.batch_size=2",
            "train.checkpoint_every=1", "train.image_every=0", "train.keep_checkpoints=3",
            "train.log_every=1"]  # fmt: skip
    run = tmp_path / "run"
    fit(load_config("quickstart_baseline", [*sets, "train.max_steps=3"]), run,
        progress=False, cpu=True)  # fmt: skip
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last", "step_00000001", "step_00000002"]
    weights = run / "checkpoints" / "last" / "models.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = fit(load_config("quickstart_baseline", [*sets, "train.max_steps=4"]), run,
                 resume=True, progress=False, cpu=True)  # fmt: skip
    assert result.steps == 4
    summary = json.loads((run / "train_summary.json").read_text())
    assert [s for s, _ in summary["history"]["train/g_total"]] == [1, 2, 3, 4]
    assert verify_checkpoint(run / "checkpoints" / "last")["step"] == 4
