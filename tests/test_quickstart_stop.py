"""Ctrl-C / SIGTERM during ``tgsr quickstart`` stops the whole command: the training stage
writes its checkpoint and the quickstart does not go on to train and evaluate the next stages
on a half-trained model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tgsr.errors import Interrupted
from tgsr.quickstart import _unless_interrupted


def _stage(tmp_path, stopped_by: str):
    stage = tmp_path / "damsm"
    stage.mkdir()
    (stage / "train_summary.json").write_text(json.dumps({"steps": 7, "stopped_by": stopped_by}))
    return stage


@pytest.mark.parametrize("stopped_by", ["max_minutes", "max_steps"])
def test_a_finished_stage_goes_on(tmp_path, stopped_by):
    stage = _stage(tmp_path, stopped_by)
    assert _unless_interrupted(stage, tmp_path) == stage


def test_a_stage_stopped_by_a_signal_stops_the_quickstart(tmp_path):
    with pytest.raises(Interrupted, match=r"after 7 steps of damsm .* nothing was evaluated"):
        _unless_interrupted(_stage(tmp_path, "signal"), tmp_path)


@pytest.mark.slow
def test_sigint_in_the_first_stage_ends_the_command_with_130(tmp_path):
    out = tmp_path / "qs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tgsr.cli.app", "quickstart", "--out", str(out), "--minutes", "20"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "damsm" / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.2)  # the DAMSM stage is set up; its loop starts now
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-1500:] + stderr[-1500:]
    assert "quickstart stopped by a signal" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "damsm" / "train_summary.json").read_text())
    assert summary["stopped_by"] == "signal"
    assert (out / "damsm" / "checkpoints").is_dir()
    assert not (out / "damsm_eval").exists() and not (out / "results.json").exists()
