"""Does a refactor change any number? Train the quickstart preset briefly and print hashes.

A tiny DAMSM is trained for a few steps, then TGSR for ``--steps`` steps (default 50), all on
the CPU from fixed seeds, float32 (``mixed_precision=no``: the CPU's bf16 is emulated and slow)
and without data workers. The output is one JSON object: the sha256 of every weight file the run
writes and the losses logged at the last step. Run it with ``PYTHONPATH`` pointing at two source
trees (e.g. a ``git worktree`` of the commit before a refactor and the working tree); a pure
refactor prints the same JSON twice::

    git worktree add /tmp/golden_base <commit>
    PYTHONPATH=/tmp/golden_base/src python benchmarks/refactor_identity.py --out /tmp/id_old
    PYTHONPATH=src python benchmarks/refactor_identity.py --out /tmp/id_new

Only the public training functions are used (``train_damsm``, ``fit``, ``load_config``); the
losses are read from ``tgsr.training.common.ScalarLog`` (wrapped, not changed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import torch

FILES = (
    "damsm/text_encoder/model.safetensors",
    "damsm/image_encoder/model.safetensors",
    "run/generator/model.safetensors",
    "run/text_encoder/model.safetensors",
    "run/checkpoints/last/models.safetensors",
)


def _record_losses(store: dict) -> None:
    """Keep the last value of every scalar the trainers log."""
    from tgsr.training import common

    original = common.ScalarLog.add

    def add(self, step, values, prefix=""):
        for k, v in values.items():
            store[prefix + k] = (int(step), float(v))
        return original(self, step, values, prefix)

    common.ScalarLog.add = add


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (overwritten)")
    parser.add_argument("--steps", type=int, default=50, help="TGSR training steps")
    parser.add_argument("--damsm-steps", type=int, default=5)
    parser.add_argument("--preset", default="quickstart")
    args = parser.parse_args(argv)

    import tgsr
    from tgsr.config import load_config
    from tgsr.training.damsm import train_damsm
    from tgsr.training.trainer import fit

    torch.set_num_threads(1)
    if args.out.exists():
        shutil.rmtree(args.out)
    common = [
        "data.num_workers=0", "train.mixed_precision=no", "damsm_train.mixed_precision=no",
        "train.channels_last=false", "train.log_every=1", "train.image_every=0",
        f"train.max_steps={args.steps}", f"train.checkpoint_every={args.steps}",
        "damsm_train.batch_size=8", f"damsm_train.max_steps={args.damsm_steps}",
        "damsm_train.log_every=1",
    ]  # fmt: skip
    losses: dict = {}
    _record_losses(losses)
    train_damsm(
        load_config(args.preset, common),
        args.out / "damsm",
        progress=False,
        cpu=True,
        overwrite=True,
    )
    cfg = load_config(args.preset, [*common, f"damsm.path={args.out / 'damsm'}"])
    fit(cfg, args.out / "run", progress=False, cpu=True, overwrite=True)
    report = {
        "tgsr": str(Path(tgsr.__file__).parent),
        "torch": torch.__version__,
        "sha256": {
            f: hashlib.sha256((args.out / f).read_bytes()).hexdigest()
            for f in FILES
            if (args.out / f).is_file()
        },
        # timings (perf/ms_per_step, ...) differ between any two runs: left out
        "last_losses": {k: losses[k] for k in sorted(losses) if not k.startswith("perf/ms")},
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
