"""Ablations on ShapeCaps: several training configs side by side, by steps, with learning curves.

    python benchmarks/ablations.py --suite SUITE --out RESULTS.jsonl [--device cuda] \
        [--minutes 5.5] [--steps N] [--seeds 0,1] [--only a,b] [--damsm-steps 300] \
        [--set KEY=VALUE ...]
    python benchmarks/ablations.py --report RESULTS.jsonl ...   # markdown tables

Every row is a preset plus ``--set``-style overrides (an ablation is a config, never a copy of
code); the training loop is ``tgsr.training.trainer.fit``. The main process trains one DAMSM
(and, with ``--final-eval``, an independent evaluation DAMSM of another seed), then starts one
worker process per (row, seed), all at once on the same device, and waits. Each worker trains
for ``--steps`` steps or until the shared wall-clock deadline (``--minutes`` for everything,
DAMSM included), and every ``--eval-every`` steps writes one JSON line: pattern accuracy of
one- and two-object test scenes and edit success of the EMA generator. With ``--final-eval``
the last line of each run (``"final": true``) also holds the full evaluation of
``tgsr.evaluation.evaluate`` (PSNR/SSIM-Y, LR-PSNR, TIM and R-precision with the independent
DAMSM, pattern accuracy incl. compositional, edit and swap success, NIQE). All lines go to
``--out``, with device and versions. Suites:

* ``four_loss``: the paper's four losses (λ_TIC 0.5, λ_cGAN 0.1) on the quickstart preset, with
  and without the fixes of ``loss.balance`` / ``loss.semantic_start`` (docs/ablations.md);
* ``table2``: the paper's Table 2 rows on ShapeCaps x8 plus the quickstart recipe;
* ``scale``: x4 / x8 / x16 at 128² HR, text vs no text (paper Fig. 8).
* ``cpu``: cheaper quickstart steps for CPUs without fast bf16 (batch, width), one row at a
  time with ``--threads 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

PAPER = ["loss.tic=0.5", "loss.cgan=0.1"]  # the paper's weights on top of the quickstart preset
SUM = ["loss.balance=sum"]  # Eq. 3-4 as written
BAL = ["loss.balance=image", "loss.balance_ratio=0.1"]
NOWARM = ["loss.semantic_start=0", "loss.semantic_ramp=0"]
WARM = ["loss.semantic_start=1000", "loss.semantic_ramp=500"]
# Table 2 rows on the quickstart network (paper §4.2; the cub_x8 ablation presets, on ShapeCaps):
# baseline = L2 only, one branch, no text; +TAM adds the text attention and cGAN; +TIC the DAMSM
# loss; +coarse-to-fine the refine branch (plain L2 on it); +TAR replaces that L2 by TAR. TIC and
# cGAN as the quickstart preset combines them (loss.balance / loss.semantic_start).
TWO80 = "data.synthetic.train_two_object_prob=0.8"  # the train split only; the test set stays
TAMXY = "generator.tam_coords=true"
T2_BASE = ["generator.coarse_to_fine=false", "loss.fine_l2=0", "loss.tar=0"]
SUITES: dict[str, dict[str, tuple[str, list[str]]]] = {
    "four_loss": {
        "quickstart": ("quickstart", []),  # λ_TIC = λ_cGAN = 0 (the reference)
        "preset_4loss": ("quickstart", PAPER),  # the acceptance command's config
        "paper_sum": ("quickstart", [*PAPER, *SUM, *NOWARM]),
        "paper_sum_noclip": ("quickstart", [*PAPER, *SUM, *NOWARM, "train.grad_clip=0"]),
        "paper_tic_only": ("quickstart", ["loss.tic=0.5", *SUM, *NOWARM]),
        "paper_cgan_only": ("quickstart", ["loss.cgan=0.1", *SUM, *NOWARM]),
        "paper_bal": ("quickstart", [*PAPER, *BAL, *NOWARM]),
        "paper_bal_r0.5": ("quickstart", [*PAPER, *BAL, *NOWARM, "loss.balance_ratio=0.5"]),
        "paper_warm": ("quickstart", [*PAPER, *SUM, *WARM]),
        "paper_bal_warm": ("quickstart", [*PAPER, *BAL, *WARM]),
        "paper_bal_frozen": ("quickstart", [*PAPER, *BAL, *NOWARM, "train.text_encoder=frozen"]),
        "paper_bal_warm_frozen": ("quickstart", [*PAPER, *BAL, *WARM, "train.text_encoder=frozen"]),
    },
    "table2": {
        "baseline": ("quickstart_baseline", []),
        "tam": ("quickstart", [*T2_BASE, "loss.cgan=0.1", *BAL]),
        "tic": ("quickstart", [*T2_BASE, *PAPER, *BAL]),
        "coarse_to_fine": ("quickstart", ["loss.tar=0", *PAPER, *BAL]),
        "tgsr": ("quickstart", ["loss.fine_l2=0", *PAPER, *BAL]),
        "quickstart": ("quickstart", []),
    },
    # cheaper steps for CPUs without fast bf16 (AVX2 only: the quickstart's float32 step is
    # 0.63 s there and its 10 TGSR minutes stop at ~900 steps, in the middle of the take-off);
    # run one row at a time with --threads 2 and --minutes 10.4 (about the quickstart's TGSR share)
    "cpu": {
        "quickstart": ("quickstart", []),
        "b8": ("quickstart", ["train.batch_size=8"]),
        "c24": ("quickstart", ["generator.channels=24"]),
        "c24_two80": ("quickstart", ["generator.channels=24", TWO80]),
        "c16_two80": ("quickstart", ["generator.channels=16", TWO80]),
    },
    # the global branch's target: the low-pass GT at sigma 2 px (the released code's, for 256^2
    # birds) holds no ShapeCaps pattern at 64^2 (4-px periods); sigma 0.5 px is the same
    # fraction of a 64^2 image as 2 px of a 256^2 one
    "lowpass": {
        "quickstart": ("quickstart", []),
        "quickstart_lp0.5": ("quickstart", ["data.lowpass_sigma=0.5"]),
        "preset_4loss_lp0.5": ("quickstart", [*PAPER, "data.lowpass_sigma=0.5"]),
    },
    # the two-object binding (the wall of the coarse-to-fine rows): more two-object scenes in
    # the train split, so more of every batch carries the signal that binds words to objects
    "two_object": {
        "quickstart_two80": ("quickstart", [TWO80]),
        "preset_4loss_two80": ("quickstart", [*PAPER, TWO80]),
        # and the TAM's query seeing the pixel's x/y (generator.tam_coords): a word can be read
        # on its side of the image without first learning where the pixel is
        "quickstart_tamxy": ("quickstart", [TAMXY]),
        "preset_4loss_tamxy": ("quickstart", [*PAPER, TAMXY]),
        "quickstart_two80_tamxy": ("quickstart", [TWO80, TAMXY]),
        "preset_4loss_two80_tamxy": ("quickstart", [*PAPER, TWO80, TAMXY]),
    },
    "scale": {
        f"x{s}_{kind}": (
            "quickstart" if kind == "text" else "quickstart_baseline",
            ["data.hr_size=128", f"data.scale={s}"],
        )
        for s in (4, 8, 16)
        for kind in ("text", "notext")
    },
}


def _spec(suite: str, name: str, extra: list[str]) -> tuple[str, list[str]]:
    """(preset, overrides) of a row, with ``--set`` overrides after the row's own."""
    preset, overrides = SUITES[suite][name]
    return preset, [*overrides, *extra]


def versions() -> dict:
    import torch

    return {"torch": torch.__version__, "python": platform.python_version()}


# ------------------------------------------------------------------------------------ worker
def _test_set(cfg, vocab, num: int, seed: int = 0) -> dict:
    import torch

    from tgsr.data.loader import build_dataset
    from tgsr.data.synthetic_text import make_caption
    from tgsr.evaluation import shapecaps as bench
    from tgsr.evaluation.common import collect, eval_data_config

    data = build_dataset(eval_data_config(cfg.data, "test", num), vocab, train=False)
    test = collect(data, 64, num)
    attrs = [json.loads(a) for a in test["attributes"]]
    rng = random.Random(seed)
    idx = [i for i, a in enumerate(attrs) if bench.can_edit(a, "one")]
    edits = [bench.make_edit(attrs[i], rng, kind="one") for i in idx]
    enc = [vocab.encode(make_caption(e, rng), cfg.data.max_words) for e in edits]
    return {
        **test,
        "attrs": attrs,
        "edit_idx": torch.tensor(idx, dtype=torch.long),
        "edits": edits,
        "edit_tokens": torch.tensor([e.ids for e in enc], dtype=torch.long),
        "edit_length": torch.tensor([e.length for e in enc], dtype=torch.long),
    }


class _OnDevice:
    """A trained generator (+ text encoder) as the evaluation's callable, run on ``device``."""

    def __init__(self, generator, text_encoder, device):
        self.generator, self.text_encoder, self.device = generator, text_encoder, device
        self.uses_text = text_encoder is not None

    def __call__(self, lq, tokens, lengths):
        import torch

        from tgsr.evaluation.common import SROutput

        dev = self.device
        words = mask = sentence = None
        with torch.no_grad():
            if self.uses_text:
                t = self.text_encoder.encode(tokens.to(dev), lengths.to(dev))
                words, mask, sentence = t.words, t.token_mask, t.sentence
            out = self.generator(lq.to(dev), words, sentence, mask)
        coarse = out.coarse[-1].float().cpu().clamp(0, 1) if out.coarse is not out.fine else None
        attn = out.attn[-1].float().cpu() if out.attn else None
        return SROutput(out.sr.float().cpu().clamp(0, 1), coarse, attn)


def run_worker(a) -> None:
    import torch

    from tgsr.config import load_config
    from tgsr.evaluation import shapecaps as bench
    from tgsr.training.trainer import fit, load_frozen_damsm

    preset, overrides = json.loads(a.spec)
    device = torch.device(a.device)
    left_min = (a.deadline - time.time() - a.reserve) / 60
    common = [
        f"damsm.path={a.damsm}", f"train.seed={a.seed}", f"train.max_steps={a.steps}",
        f"train.max_minutes={max(left_min, 0.05):.3f}", f"train.eval_every={a.eval_every}",
        f"train.torch_threads={a.threads}", "train.log_every=50", "train.image_every=0",
        "train.checkpoint_every=0",
    ]  # fmt: skip
    if a.device == "cpu":
        common.append("train.mixed_precision=no")  # no bf16 units on many CPUs: fp32 is faster
    cfg = load_config(preset, [*overrides, *common])
    torch.set_num_threads(a.threads)
    frozen, _, vocab = load_frozen_damsm(a.damsm, False)
    frozen.to(device)
    test = _test_set(cfg, vocab, a.test_scenes)
    amp = cfg.train.mixed_precision == "bf16" and device.type == "cuda"
    head = {"suite": a.suite, "name": a.name, "seed": a.seed, "preset": preset,
            "overrides": overrides, "device": a.device_name, **versions()}  # fmt: skip
    t0 = time.time()
    sink = open(a.out, "a")

    def curve(step, generator, text_encoder):
        enc = text_encoder if text_encoder is not None else frozen
        model = _OnDevice(generator, enc if cfg.generator.use_text else None, device)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            sr = model(test["lq"], test["tokens"], test["length"]).sr
            i = test["edit_idx"]
            ed = model(test["lq"][i], test["edit_tokens"], test["edit_length"]).sr
        pa = bench.pattern_accuracy(sr, test["attrs"])
        ok = bench.edit_success(ed, [test["attrs"][j] for j in i.tolist()], test["edits"])
        row = {**head, "step": step, "seconds": round(time.time() - t0, 1),
               "pattern_1obj": round(pa["pattern_accuracy_one_object"], 4),
               "pattern_2obj": round(pa["pattern_accuracy_two_objects"], 4),
               "pattern": round(pa["pattern_accuracy"], 4),
               "edit": round(float(ok.mean()), 4)}  # fmt: skip
        sink.write(json.dumps(row) + "\n")
        sink.flush()

    run_dir = Path(a.work) / f"{a.suite}.{a.name}_s{a.seed}"
    result = fit(cfg, run_dir, cpu=a.device == "cpu", progress=False, on_eval=curve, overwrite=True)
    summary = json.loads((run_dir / "train_summary.json").read_text())
    hist = summary.pop("history", {})
    # the logged losses (every 50 steps), TIC / cGAN gains of loss.balance and the gradient
    # norm before clipping: the numbers behind docs/ablations.md's diagnosis
    curves = {k.split("/", 1)[1]: [[int(s), round(float(v), 6)] for s, v in vals]
              for k, vals in hist.items() if k.startswith(("train/", "perf/g_grad"))}  # fmt: skip
    row = {**head, "final": True, "step": summary["steps"], "train_minutes": summary["minutes"],
           "stopped_by": summary["stopped_by"], "logged": curves}  # fmt: skip
    if a.final_eval:
        from tgsr.evaluation.evaluate import evaluate, load_eval_damsm

        text = result.text_encoder
        if text is None and cfg.generator.use_text:
            text = frozen
        model = _OnDevice(result.generator.to(device), text.to(device) if text else None, device)
        ecfg = dataclasses.replace(cfg, eval=dataclasses.replace(
            cfg.eval, num_images=a.eval_scenes, fid=False))  # fmt: skip
        res = evaluate({a.name: model}, ecfg, run_dir / "report", vocab=vocab,
                       eval_damsm=load_eval_damsm(a.eval_damsm), progress=False)  # fmt: skip
        metrics = res["models"][a.name]
        row["eval"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        row["eval"]["num_images"] = res["num_images"]
        # sharpness at this size: high-pass energy (x - Gaussian blur σ 1) of SR over GT's
        from tgsr.data.degradations import lowpass

        sr = model(test["lq"], test["tokens"], test["length"]).sr
        hf = [float(((x - lowpass(x, 1.0)) ** 2).mean()) for x in (sr, test["gt"].float())]
        row["eval"]["hf_ratio"] = hf[0] / hf[1]
    sink.write(json.dumps(row) + "\n")
    sink.close()


# -------------------------------------------------------------------------------------- main
def train_damsm_for(a, work: Path, seed: int, name: str, minutes: float, steps: int) -> Path:
    from tgsr.config import load_config
    from tgsr.training.damsm import train_damsm

    out = work / name
    if (out / "config.json").is_file():
        return out
    sets = [f"damsm_train.max_steps={steps}", f"damsm_train.seed={seed}",
            f"damsm_train.max_minutes={minutes:.3f}", f"train.torch_threads={a.threads * 2}"]  # fmt: skip
    if a.device == "cpu":
        sets.append("damsm_train.mixed_precision=no")
    else:  # the device waits for the scenes otherwise (about 1 ms each to render)
        sets.append("data.num_workers=4")
    if a.suite == "scale":
        sets.append("data.hr_size=128")
    cfg = load_config("quickstart", sets)
    return train_damsm(cfg, out, cpu=a.device == "cpu", progress=False, overwrite=True)


# ------------------------------------------------------------------------------------ report
CURVE_STEPS = (500, 1000, 1500, 2000, 2500, 3000)
EVAL_KEYS = (
    ("pattern_accuracy_one_object", "1-obj", 3), ("pattern_accuracy_two_objects", "2-obj", 3),
    ("pattern_accuracy_compositional", "comp.", 3), ("edit_success", "edit", 3),
    ("swap_success", "swap", 3), ("psnr", "PSNR", 2), ("ssim", "SSIM", 3),
    ("lr_psnr", "LR-PSNR", 1), ("tim", "TIM", 3), ("r_precision", "R-prec.", 3),
    ("tim_minus_gt", "TIM-GT", 3), ("hf_ratio", "HF/GT", 3), ("niqe", "NIQE", 2),
)  # fmt: skip


def _mean_spread(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    half = (max(values) - min(values)) / 2
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def _config_key(preset, overrides, fallback=None) -> tuple:
    """What identifies a row across sweeps: its preset and overrides (order-free)."""
    if preset is None or overrides is None:
        return ("name", *fallback)
    return (preset, *sorted(overrides))


def report(paths: list[str], suite: str | None = None) -> str:
    """Markdown tables from result lines: learning curves (pattern accuracy 1-obj / 2-obj and
    edit success of the EMA generator at fixed steps, per seed) and the final evaluation
    (mean ± half the range over seeds). A row is its config (preset + overrides): lines of the
    same config from different sweeps are one row, named as first seen; with ``suite``, only the
    rows of ``SUITES[suite]``, under their names there."""
    lines = [json.loads(x) for path in paths for x in Path(path).read_text().splitlines() if x]
    wanted = {_config_key(p, o): (suite, n) for n, (p, o) in SUITES[suite].items()} if suite else {}
    named: dict[tuple, tuple] = {}  # config -> (suite, name) of the row
    runs: dict[tuple, dict] = {}
    for x in lines:
        config = _config_key(x.get("preset"), x.get("overrides"), (x["suite"], x["name"]))
        if suite and config not in wanted:
            continue
        key = named.setdefault(config, wanted.get(config, (x["suite"], x["name"])))
        run = runs.setdefault(key, {"seeds": {}, "meta": x})
        run["seeds"].setdefault(x["seed"], []).append(x)
    out = ["| suite / row | seed | take-off | " + " | ".join(f"@{s}" for s in CURVE_STEPS)
           + " | last (step) |", "|---|---:|---:|" + "---|" * (len(CURVE_STEPS) + 1)]  # fmt: skip
    for (suite, name), run in runs.items():
        for seed, rows in sorted(run["seeds"].items()):
            curve = {x["step"]: x for x in rows if "pattern_1obj" in x}
            up = next((s for s in sorted(curve) if curve[s]["pattern_1obj"] >= 0.8), None)

            def cell(x):
                return f"{x['pattern_1obj']:.2f} / {x['pattern_2obj']:.2f} / {x['edit']:.2f}"

            cells = [cell(curve[s]) if s in curve else "—" for s in CURVE_STEPS]
            last = curve[max(curve)] if curve else None
            tail = f"{cell(last)} ({last['step']})" if last else "—"
            out.append(f"| {suite} / {name} | {seed} | {up or 'never'} | " + " | ".join(cells)
                       + f" | {tail} |")  # fmt: skip
    out += ["", "| suite / row | seeds | steps | " + " | ".join(k[1] for k in EVAL_KEYS) + " |",
            "|---|---|---|" + "---|" * len(EVAL_KEYS)]  # fmt: skip
    for (suite, name), run in runs.items():
        finals = [r for rows in run["seeds"].values() for r in rows if r.get("final")]
        evals = [r["eval"] for r in finals if "eval" in r]
        if not evals:
            continue
        cells = []
        for key, _, digits in EVAL_KEYS:
            vals = [e[key] for e in evals if isinstance(e.get(key), (int, float))]
            cells.append(_mean_spread(vals, digits))
        seeds = ",".join(str(r["seed"]) for r in finals)
        steps = ",".join(str(r["step"]) for r in finals)
        out.append(f"| {suite} / {name} | {seeds} | {steps} | " + " | ".join(cells) + " |")
    out += ["", "| suite / row | seed | grad. norm before clipping, steps ≤ 500 / last 500 | "
            "raw TIC / pixel grad. at the image | raw cGAN / pixel |", "|---|---:|---|---|---|"]  # fmt: skip
    for (suite, name), run in runs.items():
        for seed, rows in sorted(run["seeds"].items()):
            final = next((r for r in rows if r.get("final")), None)
            logged = (final or {}).get("logged", {})
            if not logged:
                continue
            ratio = 0.1
            for o in run["meta"]["overrides"]:
                if o.startswith("loss.balance_ratio="):
                    ratio = float(o.split("=", 1)[1])

            def med(vals):
                vals = sorted(vals)
                return vals[len(vals) // 2] if vals else None

            def fmt(v, spec=".2f"):
                return "—" if v is None else format(v, spec)

            norms = logged.get("g_grad_norm", [])
            last = norms[-1][0] if norms else 0
            early = med([v for s, v in norms if s <= 500])
            late = med([v for s, v in norms if s > last - 500])
            raw = {}
            for t in ("tic", "cgan"):  # gain = min(1, ratio * pixel / raw): raw / pixel
                gains = [v for _, v in logged.get(f"{t}_gain", []) if 0 < v < 1]
                raw[t] = med([ratio / g for g in gains])
            out.append(f"| {suite} / {name} | {seed} | {fmt(early)} / {fmt(late)} | "
                       f"{fmt(raw['tic'], '.0f')} | {fmt(raw['cgan'], '.0f')} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    if sys.argv[1:2] == ["--report"]:
        r = argparse.ArgumentParser(prog="ablations.py --report")
        r.add_argument("paths", nargs="+", help="JSON lines files of earlier sweeps")
        r.add_argument("--suite", choices=sorted(SUITES), help="only this suite's rows")
        ra = r.parse_args(sys.argv[2:])
        print(report(ra.paths, ra.suite))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="four_loss", choices=sorted(SUITES))
    p.add_argument("--out", required=True, help="JSON lines file (appended)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--minutes", type=float, default=5.5, help="wall-clock cap for everything")
    p.add_argument("--steps", type=int, default=3000, help="generator steps per run")
    p.add_argument("--seeds", default="0")
    p.add_argument("--only", default="",
                   help="comma-separated rows (default: all), NAME or NAME:SEED")  # fmt: skip
    p.add_argument("--damsm-steps", type=int, default=300, help="the DAMSM of TIC / cGAN")
    p.add_argument("--eval-damsm-steps", type=int, default=500, help="the evaluation DAMSM")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--test-scenes", type=int, default=256)
    p.add_argument("--final-eval", action="store_true", help="full evaluation at the end")
    p.add_argument("--eval-scenes", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--work", default=None, help="run folders (default: OUT without .jsonl)")
    p.add_argument("--reserve", type=float, default=None,
                   help="seconds kept free after training for the final evaluation")  # fmt: skip
    p.add_argument("--set", action="append", default=[], dest="extra", metavar="KEY=VALUE",
                   help="an override added to every row, e.g. generator.tam_coords=false to "
                        "repeat the rows measured before it was in the preset")  # fmt: skip
    # worker-only arguments
    for k in ("--worker", "--spec", "--damsm", "--eval-damsm", "--name", "--device-name"):
        p.add_argument(k, default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.reserve is None:
        a.reserve = 45.0 if a.final_eval else 10.0
    if a.worker:
        run_worker(a)
        return

    t0 = time.time()
    deadline = t0 + a.minutes * 60
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(a.work) if a.work else out.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    import torch

    device_name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = [(a.suite, n, s) for n in SUITES[a.suite] for s in seeds]  # (suite, row, seed)
    if a.only:
        runs = []
        for item in a.only.split(","):
            row, _, seed = item.partition(":")
            suite, _, name = row.rpartition("/")
            suite = suite or a.suite
            if name not in SUITES.get(suite, {}):
                sys.exit(f"unknown row {row!r}; {suite} has: {', '.join(SUITES[a.suite])}")
            runs += [(suite, name, int(x)) for x in ([seed] if seed else seeds)]
    if any(s == "scale" for s, _, _ in runs) and any(s != "scale" for s, _, _ in runs):
        sys.exit("the scale suite (128² HR) cannot share a sweep with the 64² suites")
    a.suite = runs[0][0]  # the DAMSM's data size follows it
    damsm_min = 0.2 * a.minutes
    damsm = train_damsm_for(a, work, 0, "damsm", damsm_min, a.damsm_steps)
    eval_damsm = None
    if a.final_eval:  # independent (other seed, used by no loss), longer as in the quickstart
        eval_damsm = train_damsm_for(a, work, 1000, "damsm_eval", damsm_min, a.eval_damsm_steps)
    print(f"DAMSM ready after {time.time() - t0:.0f} s; {len(runs)} runs", flush=True)
    procs = []
    parts = []
    for suite, name, seed in runs:
        tag = name if suite == runs[0][0] else f"{suite}.{name}"
        part = work / f"{tag}_s{seed}.jsonl"
        part.unlink(missing_ok=True)
        shutil.rmtree(work / f"{suite}.{name}_s{seed}", ignore_errors=True)  # a rerun: fresh
        parts.append(part)
        opts = {
            "--suite": suite, "--name": name, "--spec": json.dumps(_spec(suite, name, a.extra)),
            "--seed": seed, "--damsm": damsm, "--eval-damsm": eval_damsm or "",
            "--deadline": deadline, "--device": a.device, "--device-name": device_name,
            "--out": part, "--steps": a.steps, "--eval-every": a.eval_every,
            "--test-scenes": a.test_scenes, "--eval-scenes": a.eval_scenes,
            "--threads": a.threads, "--work": work, "--reserve": a.reserve,
        }  # fmt: skip
        cmd = [sys.executable, __file__, "--worker", "1"]
        cmd += [str(x) for kv in opts.items() for x in kv]
        if a.final_eval:
            cmd.append("--final-eval")
        log = open(work / f"{tag}_s{seed}.log", "w")
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
        procs.append((tag, seed, subprocess.Popen(cmd, stdout=log, stderr=log, env=env)))
    for name, seed, proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            proc.terminate()  # the trainer stops cleanly on SIGTERM; then the hard stop
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if proc.returncode:
            print(f"{name} seed {seed}: exit {proc.returncode} (see {work}/{name}_s{seed}.log)")
    with open(out, "a") as sink:
        for part in parts:
            if part.is_file():
                sink.write(part.read_text())
    with open(out.with_suffix(".log"), "w") as logs:  # the tail of every worker's log
        for name, seed, _ in procs:
            text = (work / f"{name}_s{seed}.log").read_text(errors="replace")
            logs.write(f"===== {name} seed {seed}\n{text[-4000:]}\n")
    print(
        f"{'run':<28} {'steps':>6} {'1-obj':>6} {'2-obj':>6} {'edit':>6}  take-off (1-obj >= 0.8)"
    )
    for part in parts:
        lines = [json.loads(x) for x in part.read_text().splitlines()] if part.is_file() else []
        curve = [x for x in lines if "pattern_1obj" in x]
        if not curve:
            print(f"{part.stem:<28} no evaluation (see {out.with_suffix('.log')})")
            continue
        last = curve[-1]
        up = next((x["step"] for x in curve if x["pattern_1obj"] >= 0.8), None)
        print(f"{part.stem:<28} {last['step']:>6} {last['pattern_1obj']:>6.3f} "
              f"{last['pattern_2obj']:>6.3f} {last['edit']:>6.3f}  {up}")  # fmt: skip
    print(f"{a.suite}: {len(parts)} runs in {(time.time() - t0) / 60:.1f} min -> {out}")


if __name__ == "__main__":
    main()
