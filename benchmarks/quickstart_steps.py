"""One quickstart-like experiment measured in optimizer steps (not minutes), so the result does
not depend on machine load: DAMSM for D steps, TGSR for T steps, evaluation on 150 test scenes.

    python benchmarks/quickstart_steps.py OUT DAMSM_STEPS TGSR_STEPS [k=v overrides ...]

An existing OUT/damsm is reused. Prints one JSON object: metrics, times, device, versions.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch

from tgsr.evaluation.evaluate import BicubicSR, evaluate, load_eval_damsm, load_run
from tgsr.quickstart import quickstart_configs
from tgsr.training.damsm import train_damsm
from tgsr.training.trainer import fit


def main() -> None:
    out, damsm_steps, tgsr_steps = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    overrides = sys.argv[4:]
    cfgs = quickstart_configs(10.0, 0, overrides)
    times = {}
    if not (out / "damsm" / "config.json").is_file():
        d = cfgs["damsm"]
        d = dataclasses.replace(d, damsm_train=dataclasses.replace(
            d.damsm_train, max_minutes=None, max_steps=damsm_steps))  # fmt: skip
        t0 = time.time()
        train_damsm(d, out / "damsm", cpu=True, progress=False, overwrite=True)
        times["damsm_minutes"] = (time.time() - t0) / 60
    t = cfgs["tgsr"]
    t = dataclasses.replace(
        t, damsm=dataclasses.replace(t.damsm, path=str(out / "damsm")),
        train=dataclasses.replace(t.train, max_minutes=None, max_steps=tgsr_steps),
    )  # fmt: skip
    t0 = time.time()
    fit(t, out / "runs" / "tgsr", cpu=True, progress=False, overwrite=True)
    times["tgsr_minutes"] = (time.time() - t0) / 60
    model, cfg = load_run(out / "runs" / "tgsr")
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, num_images=150))
    pair = load_eval_damsm(out / "damsm")
    results = evaluate({"tgsr": model, "bicubic": BicubicSR(8)}, cfg, out / "report",
                       vocab=pair[2], eval_damsm=pair, progress=False)  # fmt: skip
    models = {name: {k: v for k, v in row.items() if not isinstance(v, dict)}
              for name, row in results["models"].items()}  # fmt: skip
    print(json.dumps({"models": models, **times, "device": "cpu",
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "python": platform.python_version(), "overrides": overrides}))  # fmt: skip


if __name__ == "__main__":
    main()
