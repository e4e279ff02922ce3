"""DAMSM pre-training and TGSR training on tiny models: run folders, checkpoints, resume,
SIGTERM, two-process data-parallel training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tgsr.config import ConfigError, load_config
from tgsr.errors import ModelFormatError, TGSRError
from tgsr.evaluation.evaluate import load_run
from tgsr.export import pipeline_from_run
from tgsr.models.serialization import load_damsm, load_generator, load_text_encoder
from tgsr.training.checkpoint import load_checkpoint, save_checkpoint
from tgsr.training.damsm import train_damsm
from tgsr.training.trainer import fit

TINY = [
    "data.hr_size=32",
    "data.scale=4",
    "data.num_workers=0",
    "damsm.text_encoder.embedding_dim=16",
    "damsm.text_encoder.hidden_dim=16",
    "damsm.image_encoder.feature_dim=32",
    "damsm.image_encoder.light_channels=8",
    "damsm_train.batch_size=4",
    "damsm_train.mixed_precision=no",
    "generator.channels=8",
    "train.batch_size=4",
    "train.mixed_precision=no",
    "train.channels_last=false",
    "train.log_every=1",
    "train.image_every=2",
]


def tiny_config(*extra: str):
    return load_config("quickstart", TINY + list(extra))


@pytest.fixture(scope="module")
def damsm_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("damsm")
    train_damsm(tiny_config("damsm_train.max_steps=3"), out, progress=False, cpu=True)
    return out


def test_damsm_training_writes_a_loadable_folder(damsm_dir):
    damsm, vocab = load_damsm(damsm_dir)
    assert len(vocab) == damsm.text_encoder.vocab_size
    assert (damsm_dir / "checkpoints" / "last" / "state.json").is_file()
    state = json.loads((damsm_dir / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == 3


def test_text_training_needs_a_damsm(tmp_path):
    with pytest.raises(TGSRError, match="pre-train a DAMSM first"):
        fit(tiny_config("train.max_steps=1"), tmp_path / "run", progress=False, cpu=True)


def test_fit_writes_the_run_folder_and_a_loadable_ema_generator(tmp_path, damsm_dir):
    cfg = tiny_config("train.max_steps=3", f"damsm.path={damsm_dir}", "loss.tic=0.1",
                      "loss.semantic_start=0", "train.text_encoder=frozen")  # fmt: skip
    result = fit(cfg, tmp_path / "run", progress=False, cpu=True)
    run = result.run_dir
    assert result.steps == 3
    assert not (run / "text_encoder").exists()  # frozen: the DAMSM's encoder conditions
    for name in ("config.yaml", "vocab.json", "damsm/vocab.json", "generator/model.safetensors",
                 "checkpoints/last/models.safetensors", "train_summary.json"):  # fmt: skip
        assert (run / name).exists(), name
    assert load_config(run / "config.yaml") == cfg  # the fully resolved config
    assert list((run / "samples").glob("step_*.png"))  # image grids during training
    assert list((run / "tb").iterdir())  # TensorBoard events
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["stopped_by"] == "max_steps" and summary["steps"] == 3
    assert "train/tar" in summary["history"] and "train/tic" in summary["history"]
    g = load_generator(run / "generator")
    ema = load_file(str(run / "checkpoints" / "last" / "models.safetensors"))
    for k, v in g.state_dict().items():  # the exported generator is the EMA copy
        assert torch.equal(v, ema[f"ema.module.{k}"])


@pytest.mark.parametrize("mode", ["finetune", "scratch"])
def test_a_trained_text_encoder_is_saved_and_used_at_inference(tmp_path, damsm_dir, mode):
    cfg = tiny_config("train.max_steps=3", f"damsm.path={damsm_dir}", f"train.text_encoder={mode}")
    run = fit(cfg, tmp_path / "run", progress=False, cpu=True).run_dir
    trained = load_text_encoder(run / "text_encoder")[0].state_dict()
    damsm = load_damsm(damsm_dir)[0].text_encoder.state_dict()
    assert any(not torch.equal(v, damsm[k]) for k, v in trained.items())
    kept = load_damsm(run / "damsm")[0].text_encoder.state_dict()  # TIC / TIM stay frozen
    assert all(torch.equal(v, damsm[k]) for k, v in kept.items())
    ckpt = load_file(str(run / "checkpoints" / "last" / "models.safetensors"))
    for k, v in trained.items():  # the saved encoder is the EMA copy
        assert torch.equal(v, ckpt[f"text_ema.module.{k}"])
    for encoder in (pipeline_from_run(run).text_encoder, load_run(run)[0].text_encoder):
        for k, v in encoder.state_dict().items():
            assert torch.equal(v, trained[k]), k


def test_an_unfinished_run_takes_its_trained_text_encoder_from_the_checkpoint(tmp_path, damsm_dir):
    cfg = tiny_config("train.max_steps=2", f"damsm.path={damsm_dir}", "train.text_encoder=finetune")
    run = fit(cfg, tmp_path / "run", progress=False, cpu=True).run_dir
    trained = load_text_encoder(run / "text_encoder")[0].state_dict()
    ema_generator = load_generator(run / "generator").state_dict()
    shutil.rmtree(run / "text_encoder")
    shutil.rmtree(run / "generator")
    pipe = pipeline_from_run(run)  # both from the checkpoint's EMA copies (AveragedModel keys)
    for k, v in pipe.text_encoder.state_dict().items():
        assert torch.equal(v, trained[k]), k
    for k, v in pipe.generator.state_dict().items():
        assert torch.equal(v, ema_generator[k]), k
    # a kill between the two renames of a checkpoint write leaves only an older step_* folder
    (run / "checkpoints" / "last").rename(run / "checkpoints" / "step_2")
    pipe = pipeline_from_run(run)
    for k, v in pipe.generator.state_dict().items():
        assert torch.equal(v, ema_generator[k]), k
    shutil.rmtree(run / "checkpoints" / "step_2")
    with pytest.raises(ModelFormatError, match="no usable checkpoint"):
        pipeline_from_run(run)


def test_training_a_text_encoder_needs_text():
    with pytest.raises(ConfigError, match="train.text_encoder"):
        load_config("quickstart_baseline", ["train.text_encoder=finetune"])


def test_resume_continues_from_the_checkpoint(tmp_path, damsm_dir):
    run = tmp_path / "run"
    fit(tiny_config("train.max_steps=2", f"damsm.path={damsm_dir}"), run, progress=False, cpu=True)
    before = load_file(str(run / "checkpoints" / "last" / "models.safetensors"))
    result = fit(tiny_config("train.max_steps=4", f"damsm.path={damsm_dir}"), run,
                 resume=True, progress=False, cpu=True)  # fmt: skip
    assert result.steps == 4
    after = load_file(str(run / "checkpoints" / "last" / "models.safetensors"))
    assert json.loads((run / "checkpoints/last/state.json").read_text())["step"] == 4
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("generator."))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, damsm_dir):
    with pytest.raises(TGSRError, match="no checkpoint"):
        fit(tiny_config("train.max_steps=1", f"damsm.path={damsm_dir}"), tmp_path / "r",
            resume=True, progress=False, cpu=True)  # fmt: skip


def test_baseline_trains_without_any_damsm(tmp_path):
    cfg = load_config("quickstart_baseline", TINY + ["train.max_steps=2"])
    result = fit(cfg, tmp_path / "base", progress=False, cpu=True)
    g = load_generator(result.run_dir / "generator")
    assert not g.use_text


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    lin = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(lin.parameters())
    folder = tmp_path / "last"
    save_checkpoint(folder, {"m": lin}, {"o": opt}, {"step": 1, "elapsed": 0.0})
    import tgsr.training.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with torch.no_grad():
        lin.weight.add_(1.0)
    with pytest.raises(TGSRError, match="disk full"):  # one line, previous checkpoint kept
        save_checkpoint(folder, {"m": lin}, {"o": opt}, {"step": 2, "elapsed": 0.0})
    fresh = torch.nn.Linear(2, 2)
    state = load_checkpoint(folder, {"m": fresh}, restore_rng=False)
    assert state["step"] == 1  # the previous checkpoint survived the failed write
    assert not torch.equal(fresh.weight, lin.weight)


def test_wrong_checkpoint_is_a_one_line_error(tmp_path):
    lin = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "last", {"m": lin}, {}, {"step": 1, "elapsed": 0.0})
    with pytest.raises(ModelFormatError, match="does not match"):
        load_checkpoint(tmp_path / "last", {"m": torch.nn.Linear(3, 2)})
    with pytest.raises(ModelFormatError, match="not a tgsr checkpoint"):
        load_checkpoint(tmp_path, {"m": lin})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tgsr.cli.app", *args]


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_stops_cleanly(tmp_path, damsm_dir):
    sets = [a for s in TINY + [f"damsm.path={damsm_dir}", "train.max_steps=100000",
                               "train.checkpoint_every=0"] for a in ("--set", s)]  # fmt: skip
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli("train", "--config", "quickstart", "--out", str(run), "--cpu", *sets),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 120
    while not list((run / "samples").glob("step_*.png")) and time.time() < deadline:
        time.sleep(0.5)  # wait until training is under way
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-2000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["stopped_by"] == "signal" and summary["steps"] >= 2
    state = json.loads((run / "checkpoints" / "last" / "state.json").read_text())
    assert state["step"] == summary["steps"]


@pytest.mark.slow
def test_two_processes_train_data_parallel_and_stay_identical(tmp_path, damsm_dir):
    """torchrun really starts two gloo processes (``accelerate launch --cpu --num_processes 2``
    silently runs one); every replica must end with the same weights."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys, torch\n"
        "from accelerate import PartialState\n"
        "from tgsr.config import load_config\n"
        "from tgsr.training.trainer import fit\n"
        "cfg = load_config('quickstart', sys.argv[3:])\n"
        "res = fit(cfg, sys.argv[1], progress=False, cpu=True)\n"
        "state = PartialState()\n"
        "assert state.num_processes == 2, state.num_processes\n"
        "weights = {**res.generator.state_dict(),\n"
        "           **{'text.' + k: v for k, v in res.text_encoder.state_dict().items()}}\n"
        "torch.save(weights, f'{sys.argv[2]}/rank{state.process_index}.pt')\n"
    )
    sets = TINY + [f"damsm.path={damsm_dir}", "train.text_encoder=finetune",
                   "train.max_steps=3", "data.num_workers=0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=29517", str(script), str(tmp_path / "run"), str(tmp_path), *sets]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fresh = fit(load_config("quickstart", sets[:-2] + ["train.max_steps=0"]), tmp_path / "r0",
                progress=False, cpu=True).generator  # fmt: skip
    assert any(not torch.equal(a[k], v) for k, v in fresh.state_dict().items())  # it trained
    damsm_text = load_damsm(damsm_dir)[0].text_encoder.state_dict()
    assert any(not torch.equal(a[f"text.{k}"], v) for k, v in damsm_text.items())  # so did this


def test_the_progress_bar_total_follows_the_time_budget():
    from tgsr.training.common import bar_total

    assert bar_total(10, 1000, elapsed=5.0, budget=float("inf"), step_seconds=0.5) == 1000
    # 60 s left at 0.5 s/step: 120 more steps, so the ETA is the budget's end
    assert bar_total(10, 1000, elapsed=40.0, budget=100.0, step_seconds=0.5) == 130
    assert bar_total(10, 50, elapsed=40.0, budget=100.0, step_seconds=0.5) == 50
    assert bar_total(10, 1000, elapsed=120.0, budget=100.0, step_seconds=0.5) == 10
