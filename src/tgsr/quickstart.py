"""``tgsr quickstart``: on a fresh machine with no data and no weights, show text guidance working.

1. generate the controlled benchmark (on the fly; nothing to download),
2. pre-train the DAMSM pair (vocabulary, TIM, and text features / TIC where the config uses
   them), and an independent evaluation DAMSM (other seed, used by no loss),
3. train the full TGSR and a no-text baseline at x8 (64x64 from 8x8),
4. evaluate TGSR, baseline and bicubic, write the report with pictures,
5. export TGSR as a pipeline folder and print the commands that use it.

Run again into the same ``--out``, it starts over: each stage replaces its previous run
(``overwrite=True``); a stage stopped by a signal is not resumed.

Every stage gets a share of ``--minutes`` and stops on time; the shares are below. The default
budget depends on the CPU (:func:`default_minutes`).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import random
import shutil
import time
from pathlib import Path

import torch
from rich.console import Console

from tgsr.config import Config, load_config
from tgsr.data.synthetic import write_dataset
from tgsr.data.synthetic_text import make_caption
from tgsr.device import fast_bf16
from tgsr.errors import Interrupted
from tgsr.evaluation.evaluate import BicubicSR, evaluate, load_eval_damsm, load_run
from tgsr.evaluation.figures import training_curves
from tgsr.evaluation.report import print_headline
from tgsr.evaluation.shapecaps import can_edit, make_edit
from tgsr.export import export_pipeline
from tgsr.training.common import console
from tgsr.training.damsm import train_damsm
from tgsr.training.trainer import fit

# share of the budget per stage (the rest is evaluation, export and start-up). The evaluation
# DAMSM gets more than the training one: at 1.4 min it scored slightly smoothed ground truth
# above the ground truth itself; at 2.2 min it peaks at the ground truth (docs/quickstart.md).
SHARES = {"damsm": 0.075, "damsm_eval": 0.12, "tgsr": 0.56, "baseline": 0.15}


# The default budget. On a CPU without fast bf16 kernels the quickstart trains in float32 and
# gets about a third of the TGSR steps per minute. Measured on a 2-core AMD EPYC with AVX2 only
# (docs/quickstart.md, "On a CPU without fast bf16"): 18 minutes gave pattern accuracy 0.58 (two
# objects not yet bound to their words), 45 minutes gave 1.00 (41.4 min in all, 2,438 steps).
FAST_CPU_MINUTES = 18.0
SLOW_CPU_MINUTES = 45.0


def default_minutes(fast: bool | None = None) -> float:
    """The budget of ``tgsr quickstart`` without ``--minutes``: 18 on a CPU with fast bf16 (AMX /
    AVX-512-BF16), 45 without (``fast``: :func:`tgsr.device.fast_bf16` of the CPU when None)."""
    if fast is None:
        fast = fast_bf16("cpu")
    return FAST_CPU_MINUTES if fast else SLOW_CPU_MINUTES


def slow_cpu_notice(minutes: float, fast: bool | None = None) -> str | None:
    """One line for a budget under ``SLOW_CPU_MINUTES`` on a CPU without fast bf16; None
    otherwise (also when the budget is the default: it is chosen for the CPU)."""
    if default_minutes(fast) <= minutes:
        return None
    return (
        f"note: no fast bf16 on this CPU (AMX / AVX-512-BF16): in {minutes:g} min TGSR gets too "
        f"few steps to bind two objects to their words (2-core AVX2, 18 min: pattern accuracy "
        f"0.58); the default here, --minutes {SLOW_CPU_MINUTES:g}, gave 1.00 (docs/quickstart.md)"
    )


def _with(cfg: Config, **sections) -> Config:
    return dataclasses.replace(cfg, **sections)


def quickstart_configs(minutes: float, seed: int, overrides: list[str]) -> dict[str, Config]:
    cfg = load_config("quickstart", overrides)
    # the baseline is defined by its generator/loss sections (no text, L2 only): user overrides
    # of those sections go to TGSR only; data/train/... overrides apply to both
    shared = [o for o in overrides if not o.split("=", 1)[0].startswith(("generator.", "loss."))]
    base = load_config("quickstart_baseline", shared)

    def budget(c: Config, share: float, seed_: int) -> Config:
        return _with(c, train=dataclasses.replace(c.train, max_minutes=minutes * share, seed=seed_))

    damsm = _with(cfg, damsm_train=dataclasses.replace(
        cfg.damsm_train, max_minutes=minutes * SHARES["damsm"], seed=seed))  # fmt: skip
    damsm_eval = _with(cfg, damsm_train=dataclasses.replace(
        cfg.damsm_train, max_minutes=minutes * SHARES["damsm_eval"], seed=seed + 1000))  # fmt: skip
    return {
        "damsm": damsm,
        "damsm_eval": damsm_eval,
        "tgsr": budget(cfg, SHARES["tgsr"], seed),
        "baseline": budget(base, SHARES["baseline"], seed),
    }


def _write_examples(folder: Path, seed: int, num: int = 4) -> list[tuple[Path, str, str]]:
    """A few LR inputs of the test split (8x8 PNGs) with their caption and an edited caption
    (another pattern / colour pair for one object), for `tgsr upscale`. The folder is the
    quickstart's own: a rerun (another --seed) replaces it instead of adding files beside."""
    shutil.rmtree(folder, ignore_errors=True)
    write_dataset(folder, num=num, size=64, seed=seed, split="test", scale=8, captions=1)
    records = [json.loads(line) for line in (folder / "attributes.jsonl").read_text().splitlines()]
    rng = random.Random(seed)
    out = []
    for rec in records:
        attrs = rec["attributes"]
        edited = make_caption(make_edit(attrs, rng), rng) if can_edit(attrs) else rec["captions"][0]
        out.append((folder / "lq_x8" / f"{rec['key']}.png", rec["captions"][0], edited))
    return out


def _unless_interrupted(stage_dir: Path, out: Path) -> Path:
    """A signal (Ctrl-C, SIGTERM) stops a training stage with a checkpoint; the quickstart then
    stops as well, instead of going on to evaluate a half-trained model."""
    summary = json.loads((Path(stage_dir) / "train_summary.json").read_text())
    if summary.get("stopped_by") == "signal":
        raise Interrupted(
            f"quickstart stopped by a signal after {summary['steps']} steps of {stage_dir.name} "
            f"(its checkpoint is in {stage_dir}); nothing was evaluated. Run the same command "
            f"again to start over in {out}."
        )
    return stage_dir


def run_quickstart(out: str | Path, minutes: float | None = None, seed: int = 0,
                   overrides: list[str] | None = None) -> dict:  # fmt: skip

    t0 = time.monotonic()
    fast = fast_bf16("cpu")
    minutes = default_minutes(fast) if minutes is None else minutes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfgs = quickstart_configs(minutes, seed, overrides or [])
    console.rule(f"[bold]tgsr quickstart[/] - budget {minutes:.0f} min, output in {out}")
    notice = slow_cpu_notice(minutes, fast)
    if notice:
        console.print(f"[yellow]{notice}[/]")

    console.rule("1/5 DAMSM text-image encoders (vocabulary, TIM, TIC when used)")
    damsm_dir = _unless_interrupted(
        train_damsm(cfgs["damsm"], out / "damsm", cpu=True, overwrite=True), out
    )
    console.rule("2/5 independent evaluation DAMSM (other seed, used by no loss)")
    damsm_eval_dir = _unless_interrupted(
        train_damsm(cfgs["damsm_eval"], out / "damsm_eval", cpu=True, overwrite=True), out
    )

    tgsr_cfg = cfgs["tgsr"]
    terms = " + ".join(k for k in ("l2", "fine_l2", "tar", "tic", "cgan", "lr_consistency")
                       if getattr(tgsr_cfg.loss, k) > 0)  # fmt: skip
    console.rule(f"3/5 TGSR x8 (text attention, coarse-to-fine; {terms}; "
                 f"{tgsr_cfg.train.text_encoder} text encoder)")  # fmt: skip
    tgsr_cfg = _with(tgsr_cfg, damsm=dataclasses.replace(tgsr_cfg.damsm, path=str(damsm_dir)))
    tgsr_run = _unless_interrupted(
        fit(tgsr_cfg, out / "runs" / "tgsr", cpu=True, overwrite=True).run_dir, out
    )
    console.rule("4/5 no-text baseline x8 (same data, L2 only)")
    base_run = _unless_interrupted(
        fit(cfgs["baseline"], out / "runs" / "baseline", cpu=True, overwrite=True).run_dir, out
    )

    console.rule("5/5 evaluation: TGSR vs baseline vs bicubic")
    tgsr_model, _ = load_run(tgsr_run)
    base_model, _ = load_run(base_run)
    models = {"tgsr": tgsr_model, "baseline": base_model, "bicubic": BicubicSR(tgsr_cfg.data.scale)}
    curves = {}
    for name, run in (("tgsr", tgsr_run), ("baseline", base_run)):
        hist = json.loads((run / "train_summary.json").read_text())["history"]
        for key in ("train/g_total", "train/l2", "train/tar", "train/tic"):
            if key in hist:
                curves[f"{name} {key.split('/')[1]}"] = hist[key]
    extra = {}
    if curves:
        extra["training_curves"] = training_curves(
            curves, out / "report" / "figures" / "curves.png"
        )
    summaries = {
        name: {k: v for k, v in json.loads((run / "train_summary.json").read_text()).items()
               if k != "history"}
        for name, run in (("tgsr", tgsr_run), ("baseline", base_run))
    }  # fmt: skip
    meta = {
        "title": "tgsr quickstart: text-guided x8 super-resolution on the controlled benchmark",
        "command": f"tgsr quickstart --out {out} --minutes {minutes:g} --seed {seed}"
        + "".join(f" --set {o}" for o in overrides or []),
        "device": f"CPU ({platform.processor() or platform.machine()}), "
        f"{torch.get_num_threads()} threads",
        "versions": f"torch {torch.__version__}, python {platform.python_version()}",
        "training": json.dumps(summaries),
    }
    train_pair = load_eval_damsm(damsm_dir)
    results = evaluate(
        models, tgsr_cfg, out / "report", vocab=train_pair[2],
        eval_damsm=load_eval_damsm(damsm_eval_dir), train_damsm=train_pair,
        meta=meta, extra_figures=extra,
    )  # fmt: skip
    export_pipeline(tgsr_run, out / "model")
    examples = _write_examples(out / "examples", seed)
    total = (time.monotonic() - t0) / 60
    results["quickstart"] = {"minutes": total, "training": summaries}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    console.rule("results")
    wide = console if console.is_terminal else Console(stderr=True, width=180)  # logs: no cut
    print_headline(results, wide)
    console.print(
        f"\nfinished in {total:.1f} min. Report: [bold]{out / 'report' / 'report.html'}[/]"
    )
    console.print(
        "Upscale a test input with two different captions (editable SR), or open the demo:"
    )
    lq, caption, edited = examples[0]
    console.print(
        f'  tgsr upscale {lq} --model {out / "model"} --text "{caption}" '
        f'--text "{edited}" --out {out / "upscaled"}'
    )
    console.print(f"  tgsr demo --model {out / 'model'}")
    return results
