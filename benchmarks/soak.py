"""Soak: quickstart-style training for N minutes with periodic eval / export / resume cycles in
one long-lived process; reports RSS after every cycle and whether it grows.

Each cycle resumes the run from its newest checkpoint and trains ``--steps`` more steps
(``fit(resume=True)``: the same code path as ``tgsr train --resume``), exports the pipeline,
evaluates the run (``tgsr eval``'s library call on a few test images) and upscales with the
exported pipeline. RSS (``/proc/self/status``) is read after each cycle and a garbage
collection; growth is the least-squares slope over the cycles after the first two (warm-up:
imports, allocator pools).

    python benchmarks/soak.py --minutes 10 --out benchmarks/results/soak.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "data.hr_size=32",
    "data.scale=4",
    "data.num_workers=0",
    "data.synthetic.eval_num=16",
    "damsm.text_encoder.embedding_dim=16",
    "damsm.text_encoder.hidden_dim=16",
    "damsm.image_encoder.kind=light",
    "damsm.image_encoder.feature_dim=32",
    "damsm.image_encoder.light_channels=8",
    "damsm.image_encoder.light_input_size=32",
    "damsm_train.batch_size=4",
    "damsm_train.max_steps=5",
    "generator.channels=8",
    "train.batch_size=4",
    "train.mixed_precision=no",
    "train.channels_last=false",
    "train.log_every=10",
    "train.image_every=50",
    "train.checkpoint_every=25",
    "eval.num_images=16",
    "eval.batch_size=8",
    "eval.fid=false",
    "eval.niqe=false",
]


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=50, help="training steps per cycle")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/soak.json")
    args = ap.parse_args()

    from tgsr.config import load_config
    from tgsr.data.degradations import degrade, image_to_tensor
    from tgsr.evaluation.evaluate import evaluate_cli
    from tgsr.export import export_pipeline
    from tgsr.pipeline import TGSRPipeline
    from tgsr.training.damsm import train_damsm
    from tgsr.training.trainer import fit

    cpu = args.device == "cpu"
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="tgsr-soak-"))
    damsm = train_damsm(load_config("quickstart", TINY), work / "damsm", progress=False, cpu=cpu)
    run = work / "run"
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.random((3, 64, 64), dtype=np.float32))
    lq = degrade(hr, 4).clamp(0, 1)
    t0 = time.monotonic()
    cycles = []
    step = 0
    while time.monotonic() - t0 < args.minutes * 60:
        c0 = time.monotonic()
        step += args.steps
        cfg = load_config("quickstart", [*TINY, f"damsm.path={damsm}", f"train.max_steps={step}"])
        fit(cfg, run, resume=step > args.steps, progress=False, cpu=cpu)
        t_train = time.monotonic() - c0
        model = export_pipeline(run, work / "model", onnx=False)
        evaluate_cli([run], None, None, work / "eval", None, [], True)
        pipe = TGSRPipeline.from_pretrained(model, device=args.device)
        for caption in ("a red and cyan striped circle", "", "a blue square " * 4):
            pipe(image_to_tensor(lq.permute(1, 2, 0).mul(255).byte().numpy()), caption)
        del pipe
        shutil.rmtree(work / "eval", ignore_errors=True)
        gc.collect()
        cycles.append({
            "cycle": len(cycles) + 1,
            "steps": step,
            "minutes": round((time.monotonic() - t0) / 60, 2),
            "train_s": round(t_train, 1),
            "cycle_s": round(time.monotonic() - c0, 1),
            "rss_mb": round(rss_mb(), 1),
        })  # fmt: skip
        print(json.dumps(cycles[-1]), flush=True)
    steady = cycles[2:] if len(cycles) > 4 else cycles
    x = np.array([c["cycle"] for c in steady], dtype=float)
    y = np.array([c["rss_mb"] for c in steady], dtype=float)
    slope = float(np.polyfit(x, y, 1)[0]) if len(steady) >= 2 else float("nan")
    report = {
        "benchmark": "soak",
        "device": args.device,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared, busy)",
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "minutes": args.minutes,
        "steps_per_cycle": args.steps,
        "cycles": len(cycles),
        "total_steps": step,
        "rss_first_mb": cycles[0]["rss_mb"] if cycles else None,
        "rss_steady_start_mb": steady[0]["rss_mb"] if steady else None,
        "rss_last_mb": cycles[-1]["rss_mb"] if cycles else None,
        "rss_peak_vmhwm_mb": round(rss_mb("VmHWM"), 1),
        "rss_slope_mb_per_cycle": round(slope, 3),
        "per_cycle": cycles,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_cycle"}, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
