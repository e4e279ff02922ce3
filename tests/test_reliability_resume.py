"""Resume is exact: a run killed with SIGKILL and resumed ends with the same weights, optimizer
states, RNG states and loss curve as a run that was never interrupted (bit for bit on the CPU,
``data.num_workers: 0``, one torch thread), also under a two-process gloo launch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tgsr.config import load_config
from tgsr.data.synthetic import build_vocabulary
from tgsr.training.checkpoint import ShuffledBatches
from tgsr.training.common import infinite

# tiny quickstart-like runs; TIC and cGAN on so that every kind of state is in the checkpoint
# (generator, discriminator, trained text encoder, both EMAs, three optimizers, the scheduler)
TINY = [
    "data.hr_size=32",
    "data.scale=4",
    "data.num_workers=0",
    "damsm.text_encoder.embedding_dim=8",
    "damsm.text_encoder.hidden_dim=8",
    "damsm.text_encoder.dropout=0.0",
    "damsm.image_encoder.kind=light",
    "damsm.image_encoder.feature_dim=16",
    "damsm.image_encoder.light_channels=8",
    "damsm.image_encoder.light_input_size=32",
    "damsm_train.batch_size=4",
    "generator.channels=8",
    "discriminator.channels=8",
    "loss.tic=0.1",
    "loss.cgan=0.1",
    "loss.semantic_start=0",  # TIC / cGAN from the first step
    "train.batch_size=4",
    "train.mixed_precision=no",
    "train.channels_last=false",
    "train.log_every=1",
    "train.image_every=0",
    "train.checkpoint_every=1",
    "train.torch_threads=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TGSR_DEBUG": "1"}


@pytest.fixture(scope="module")
def damsm_dir(tmp_path_factory) -> Path:
    """A tiny DAMSM (seeded random weights) on the benchmark's vocabulary."""
    from tgsr.models import TextEncoder, build_image_encoder
    from tgsr.models.serialization import save_damsm

    cfg = load_config("quickstart", TINY)
    torch.manual_seed(0)
    vocab = build_vocabulary(seed=0)
    text_encoder = TextEncoder(cfg.damsm.text_encoder, len(vocab))
    image_encoder = build_image_encoder(cfg.damsm.image_encoder, load_weights=False)
    out = tmp_path_factory.mktemp("damsm")
    save_damsm(text_encoder.eval(), image_encoder.eval(), out, vocab, cfg.damsm)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cmd(run: Path, damsm: Path, steps: int, ddp: bool, extra: tuple = ()) -> list[str]:
    sets = [
        a for s in [*TINY, f"damsm.path={damsm}", f"train.max_steps={steps}"] for a in ("--set", s)
    ]
    launch = [sys.executable, "-m", "tgsr.cli.app"]
    if ddp:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                  f"--master_port={free_port()}", "-m", "tgsr.cli.app"]  # fmt: skip
    return [*launch, "train", "--config", "quickstart", "--out", str(run), "--cpu", *sets, *extra]


def run_ok(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def saved_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "last" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (torchrun starts each worker in its own session)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def kill_at(cmd: list[str], run: Path, at_step: int, max_steps: int) -> int:
    """Start ``cmd`` and SIGKILL it (and its worker processes) once a checkpoint of step
    ``at_step`` or later is on disk; -> the step of the newest checkpoint at the kill."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while saved_step(run) < at_step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    for pid in children(proc.pid) + [proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    step = saved_step(run)
    assert at_step <= step < max_steps, f"killed too late (step {step})"
    return step


def assert_same_state(a: Path, b: Path) -> dict:
    """The two runs' final checkpoints and loss curves are bit-identical; -> numbers for docs."""
    wa = load_file(str(a / "checkpoints" / "last" / "models.safetensors"))
    wb = load_file(str(b / "checkpoints" / "last" / "models.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    oa = torch.load(a / "checkpoints" / "last" / "optimizers.pt", weights_only=True)
    ob = torch.load(b / "checkpoints" / "last" / "optimizers.pt", weights_only=True)

    def same(x, y, where):
        if torch.is_tensor(x):
            assert torch.equal(x, y), where
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                same(u, v, f"{where}[{i}]")
        else:
            assert x == y, where

    same(oa, ob, "optimizers")
    assert {"generator", "discriminator", "scheduler_g"} <= oa.keys()
    sa = json.loads((a / "checkpoints" / "last" / "state.json").read_text())
    sb = json.loads((b / "checkpoints" / "last" / "state.json").read_text())
    assert sa["processes"] == sb["processes"]  # every RNG and the data-set state
    ha = json.loads((a / "train_summary.json").read_text())["history"]
    hb = json.loads((b / "train_summary.json").read_text())["history"]
    curves = [k for k in ha if k.startswith("train/")]
    assert {"train/g_total", "train/tic", "train/cgan", "train/d_total"} <= set(curves)
    for k in curves:
        assert ha[k] == hb[k], k  # the whole loss curve, before and after the kill
    return {"tensors": len(wa), "curves": len(curves), "points": len(ha["train/g_total"])}


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path, damsm_dir):
    steps = 8
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    run_ok(train_cmd(ref, damsm_dir, steps, ddp=False))
    kill_at(train_cmd(killed, damsm_dir, steps, ddp=False), killed, 3, steps)
    run_ok(train_cmd(killed, damsm_dir, steps, ddp=False, extra=("--resume",)))
    figures = assert_same_state(ref, killed)
    assert figures["points"] == steps
    print(f"resume figures: {figures}")  # docs/reliability.md (pytest -s)


@pytest.mark.slow
def test_two_process_sigkill_and_resume_is_bit_identical(tmp_path, damsm_dir):
    steps = 8
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    run_ok(train_cmd(ref, damsm_dir, steps, ddp=True))
    kill_at(train_cmd(killed, damsm_dir, steps, ddp=True), killed, 2, steps)
    run_ok(train_cmd(killed, damsm_dir, steps, ddp=True, extra=("--resume",)))
    print(f"DDP resume figures: {assert_same_state(ref, killed)}")  # pytest -s
    state = json.loads((ref / "checkpoints" / "last" / "state.json").read_text())
    assert len(state["processes"]) == 2  # one RNG / data-set state per process


def test_damsm_resume_is_bit_identical(tmp_path):
    """DAMSM pre-training (dropout on: the torch RNG matters) stopped and resumed."""
    from tgsr.training.damsm import train_damsm

    base = [*TINY, "damsm.text_encoder.dropout=0.5", "damsm_train.log_every=1",
            "damsm_train.checkpoint_every=1"]  # fmt: skip
    ref, two = tmp_path / "ref", tmp_path / "two"
    train_damsm(load_config("quickstart", [*base, "damsm_train.max_steps=4"]), ref,
                progress=False, cpu=True)  # fmt: skip
    train_damsm(load_config("quickstart", [*base, "damsm_train.max_steps=2"]), two,
                progress=False, cpu=True)  # fmt: skip
    torch.manual_seed(123)  # the resume must not depend on the state it starts from
    train_damsm(load_config("quickstart", [*base, "damsm_train.max_steps=4"]), two,
                resume=True, progress=False, cpu=True)  # fmt: skip
    wa = load_file(str(ref / "checkpoints" / "last" / "models.safetensors"))
    wb = load_file(str(two / "checkpoints" / "last" / "models.safetensors"))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    sa = json.loads((ref / "checkpoints" / "last" / "state.json").read_text())
    sb = json.loads((two / "checkpoints" / "last" / "state.json").read_text())
    assert sa["processes"] == sb["processes"] and sa["history"] == sb["history"]


def test_batches_resume_mid_epoch_without_loading_the_skipped_ones():
    loaded = []

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            loaded.append(i)
            return i

    def loader():
        sampler = ShuffledBatches(10, 3, seed=5)
        return torch.utils.data.DataLoader(Data(), batch_sampler=sampler,
                                           generator=torch.Generator().manual_seed(5))  # fmt: skip

    full = infinite(loader())
    stream = [next(full).tolist() for _ in range(8)]  # 3 batches per epoch: epochs 0, 1, 2
    assert sorted(sum(stream[:3], [])) != sorted(sum(stream[3:6], []))  # reshuffled, partial
    for start in range(8):
        loaded.clear()
        resumed = infinite(loader(), start=start)
        assert [next(resumed).tolist() for _ in range(8 - start)] == stream[start:]
        assert len(loaded) == 3 * (8 - start)  # nothing loaded for the skipped batches


def test_processes_take_disjoint_batches():
    a = list(ShuffledBatches(20, 4, seed=1, rank=0, world=2))
    b = list(ShuffledBatches(20, 4, seed=1, rank=1, world=2))
    assert len(a) == len(b) == 2  # 5 whole batches: 2 each, the odd one dropped
    assert not set(sum(a, [])) & set(sum(b, []))
