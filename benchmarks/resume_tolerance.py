"""How exact is a resumed run on a given device? (docs/reliability.md, tolerance)

Three tiny text-guided runs of ``--steps`` steps: A and B uninterrupted (same seed), C stopped
at ``--stop`` and resumed from its checkpoint. On the CPU all three are bit-identical; on CUDA
nondeterministic kernels make even A and B differ, and C should differ from A by no more than B
does. Reports, per run pair, the largest absolute weight difference and the largest difference
of the final loss values. Writes JSON.

    PYTHONPATH=src python3 benchmarks/resume_tolerance.py --device cuda --out resume_tolerance.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

SETS = [
    "data.hr_size=32",
    "data.scale=4",
    "data.num_workers=0",
    "damsm.text_encoder.embedding_dim=16",
    "damsm.text_encoder.hidden_dim=16",
    "damsm.text_encoder.dropout=0.0",
    "damsm.image_encoder.kind=light",
    "damsm.image_encoder.feature_dim=32",
    "damsm.image_encoder.light_channels=8",
    "generator.channels=16",
    "loss.tic=0.1",
    "loss.cgan=0.1",
    "loss.semantic_start=0",
    "train.batch_size=4",
    "train.log_every=1",
    "train.image_every=0",
    "train.checkpoint_every=0",
]


def tiny_damsm(out: Path, cfg) -> Path:
    from tgsr.data.synthetic import build_vocabulary
    from tgsr.models import TextEncoder, build_image_encoder
    from tgsr.models.serialization import save_damsm

    torch.manual_seed(0)
    vocab = build_vocabulary(seed=0)
    text_encoder = TextEncoder(cfg.damsm.text_encoder, len(vocab))
    image_encoder = build_image_encoder(cfg.damsm.image_encoder, load_weights=False)
    save_damsm(text_encoder.eval(), image_encoder.eval(), out, vocab, cfg.damsm)
    return out


def compare(a: Path, b: Path) -> dict:
    wa = load_file(str(a / "checkpoints" / "last" / "models.safetensors"))
    wb = load_file(str(b / "checkpoints" / "last" / "models.safetensors"))
    diffs = [(wa[k].float() - wb[k].float()).abs().max().item() for k in wa if wa[k].numel()]
    ha = json.loads((a / "train_summary.json").read_text())["history"]["train/g_total"]
    hb = json.loads((b / "train_summary.json").read_text())["history"]["train/g_total"]
    return {
        "identical_tensors": sum(torch.equal(wa[k], wb[k]) for k in wa),
        "tensors": len(wa),
        "max_abs_weight_diff": max(diffs),
        "max_abs_loss_diff": max(abs(x[1] - y[1]) for x, y in zip(ha, hb, strict=True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--stop", type=int, default=13)
    ap.add_argument("--out", type=Path, default=Path("resume_tolerance.json"))
    args = ap.parse_args()

    from tgsr.config import load_config
    from tgsr.training.trainer import fit

    cpu = args.device == "cpu"
    work = Path(tempfile.mkdtemp(prefix="tgsr-resume-"))
    damsm = tiny_damsm(work / "damsm", load_config("quickstart", SETS))
    base = [*SETS, f"damsm.path={damsm}"]
    for name in ("a", "b"):
        fit(load_config("quickstart", [*base, f"train.max_steps={args.steps}"]), work / name,
            progress=False, cpu=cpu)  # fmt: skip
    fit(load_config("quickstart", [*base, f"train.max_steps={args.stop}"]), work / "c",
        progress=False, cpu=cpu)  # fmt: skip
    torch.manual_seed(12345)  # the resume must not depend on the state it starts from
    fit(load_config("quickstart", [*base, f"train.max_steps={args.steps}"]), work / "c",
        resume=True, progress=False, cpu=cpu)  # fmt: skip
    report = {
        "benchmark": "resume_tolerance",
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if not cpu else platform.processor(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "steps": args.steps,
        "stopped_and_resumed_at": args.stop,
        "uninterrupted_vs_uninterrupted": compare(work / "a", work / "b"),
        "uninterrupted_vs_resumed": compare(work / "a", work / "c"),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
