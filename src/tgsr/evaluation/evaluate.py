"""The evaluation driver behind ``tgsr eval`` and the quickstart.

For every model (TGSR runs, a no-text baseline, bicubic) on the evaluation split:
PSNR / SSIM on Y (border = scale), LR-consistency PSNR, TIM (Eq. 8) and R-precision with an
**independent** evaluation DAMSM (and, second, with the DAMSM the TIC loss trained against),
LPIPS / FID / NIQE when their weights exist (otherwise "unavailable" with the reason), and on the
controlled benchmark the ShapeCaps protocol (:mod:`tgsr.evaluation.shapecaps`: exact pattern
accuracy, edit success and swap success).
"""

from __future__ import annotations

import dataclasses
import shlex
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from tgsr.config import (
    Config,
    _deep_merge,  # noqa: PLC2701
    config_from_dict,
    config_to_dict,
    load_config,
    parse_overrides,
)
from tgsr.data.degradations import imresize
from tgsr.data.loader import build_dataset, build_vocabulary
from tgsr.errors import TGSRError
from tgsr.evaluation import figures as figs
from tgsr.evaluation.common import (
    SROutput,
    batch_slices,
    collect,
    encode_captions,
    eval_data_config,
    run_model,
)
from tgsr.evaluation.metrics import lr_psnr, psnr_y, ssim_y
from tgsr.evaluation.niqe import mean_niqe
from tgsr.evaluation.perceptual import FIDMetric, LPIPSMetric
from tgsr.evaluation.report import write_report
from tgsr.evaluation.shapecaps import ShapeCapsEval
from tgsr.models.damsm import r_precision, tim
from tgsr.run_folder import read_run
from tgsr.training.common import console, make_progress
from tgsr.training.trainer import load_frozen_damsm


# ----------------------------------------------------------------------------- models
class GeneratorSR:
    """A trained generator (+ the text encoder that conditions it) as a callable on token batches."""

    def __init__(self, generator, text_encoder=None):
        self.generator = generator.eval()
        self.text_encoder = text_encoder.eval() if text_encoder is not None else None
        self.uses_text = bool(getattr(generator, "use_text", text_encoder is not None))

    @torch.no_grad()
    def __call__(self, lq, tokens, lengths) -> SROutput:
        words = mask = sentence = None
        if self.uses_text:
            text = self.text_encoder.encode(tokens, lengths)
            words, mask, sentence = text.words, text.token_mask, text.sentence
        out = self.generator(lq, words, sentence, mask)
        attn = out.attn[-1] if out.attn else None
        coarse = out.coarse[-1] if out.coarse is not out.fine else None
        return SROutput(out.sr.clamp(0, 1), coarse, attn)


class BicubicSR:
    uses_text = False

    def __init__(self, scale: int):
        self.scale = scale

    @torch.no_grad()
    def __call__(self, lq, tokens, lengths) -> SROutput:
        return SROutput(imresize(lq, self.scale, method="bicubic").clamp(0, 1))


def load_run(run_dir: str | Path):
    """(GeneratorSR, Config) from a training run folder, read by :func:`tgsr.run_folder.read_run`
    (the generator of ``generator/``, else of the newest valid checkpoint)."""
    run = read_run(run_dir)
    return GeneratorSR(run.generator, run.text_encoder), run.config


def load_eval_damsm(path: str | Path | None):
    if path is None:
        return None
    te, ie, vocab = load_frozen_damsm(path, need_image_encoder=True)
    return te, ie, vocab


# ----------------------------------------------------------------------------- scoring
class DAMSMScorer:
    """TIM (Eq. 8) and R-precision with one DAMSM pair."""

    def __init__(
        self, text_encoder, image_encoder, vocab, gamma1, gamma2, max_words, rp_candidates, seed
    ):
        self.te, self.ie, self.vocab = text_encoder, image_encoder, vocab
        self.g1, self.g2, self.max_words = gamma1, gamma2, max_words
        self.rp_candidates, self.seed = rp_candidates, seed

    def encode_captions(self, captions: list[str]):
        return self.te.encode(*encode_captions(self.vocab, captions, self.max_words))

    @torch.no_grad()
    def score(self, images: torch.Tensor, captions: list[str], batch_size: int) -> dict:
        tims, globs, sents = [], [], []
        for sl in batch_slices(len(captions), batch_size):
            text = self.encode_captions(captions[sl])
            regions, glob = self.ie(images[sl].float())
            tims.append(tim(regions, text.words, text.token_mask, self.g1, self.g2))
            globs.append(glob)
            sents.append(text.sentence)
        with warnings.catch_warnings():  # the note travels in the result; evaluate() prints it
            warnings.simplefilter("ignore")
            rp = r_precision(torch.cat(globs), torch.cat(sents), self.rp_candidates, self.seed)
        per_image = torch.cat(tims).float().cpu()
        return {"tim": float(per_image.mean()), "tim_per_image": per_image,
                "r_precision": rp.value, "rp_note": rp.note}  # fmt: skip


def _pixel_metrics(
    sr: torch.Tensor, gt: torch.Tensor, lq: torch.Tensor, scale: int, method: str
) -> dict:
    return {
        "psnr": float(psnr_y(sr, gt, border=scale).mean()),
        "ssim": float(ssim_y(sr, gt, border=scale).mean()),
        "lr_psnr": float(lr_psnr(sr, lq, scale, method).mean()),
    }


def _perceptual_metrics(sr: torch.Tensor, gt: torch.Tensor, cfg: Config) -> dict:
    """LPIPS, and NIQE / FID where ``eval`` asks for them ({"value": None, "reason"} when a
    metric's weights are missing)."""
    ec = cfg.eval
    r = {}
    lp = LPIPSMetric(ec.lpips_weights)
    if lp.available:
        lp.update(sr, gt)
    r["lpips"] = {"value": lp.compute(), "reason": lp.reason} if not lp.available else lp.compute()
    if ec.niqe:
        value, reason = mean_niqe(sr, border=cfg.data.scale)
        r["niqe"] = value if reason is None else {"value": None, "reason": reason}
    if ec.fid:
        fid = FIDMetric()
        if fid.available:
            fid.update(sr, gt)
        r["fid"] = fid.compute() if fid.available else {"value": None, "reason": fid.reason}
    return r


def _damsm_scorers(cfg: Config, eval_damsm, train_damsm, notes: dict) -> dict[str, DAMSMScorer]:
    """Tag ("" for the independent evaluation DAMSM, "_train_encoder") -> scorer."""
    scorers = {}
    for tag, pair in (("", eval_damsm), ("_train_encoder", train_damsm)):
        if pair is not None:
            te, ie, dvocab = pair
            scorers[tag] = DAMSMScorer(te, ie, dvocab, cfg.damsm.gamma1, cfg.damsm.gamma2,
                                       cfg.data.max_words, cfg.eval.r_precision_candidates,
                                       cfg.eval.seed)  # fmt: skip
    if not scorers:
        notes["tim"] = "unavailable: no DAMSM given (--eval-damsm)"
    if "" not in scorers and "_train_encoder" in scorers:
        notes["tim"] = "no independent evaluation DAMSM given: only the training DAMSM's scores"
    return scorers


def _gt_row(gt, captions, scorers, tim_images, results, shapecaps, batch_size) -> dict:
    """The ground truth's scores, and each model's TIM minus the GT's (paired: same captions)."""
    row: dict = {}
    for tag, sc in scorers.items():
        s = sc.score(gt, captions, batch_size)
        row["tim" + tag], row["r_precision" + tag] = s["tim"], s["r_precision"]
        for (name, tag_), per_image in tim_images.items():
            if tag_ == tag:
                diff = per_image - s["tim_per_image"]
                model_row = results["models"][name]
                model_row["tim_minus_gt" + tag] = float(diff.mean())
                model_row["tim_minus_gt_sem" + tag] = float(diff.std() / len(diff) ** 0.5)
    if shapecaps is not None:
        row.update(shapecaps.score_gt(gt))
    return row


# ----------------------------------------------------------------------------- the driver
def evaluate(
    models: dict[str, Callable],
    cfg: Config,
    out_dir: str | Path,
    *,
    vocab,
    eval_damsm=None,
    train_damsm=None,
    meta: dict | None = None,
    extra_figures: dict | None = None,
    progress: bool = True,
    inputs: dict | None = None,
) -> dict:
    """Score ``models`` (name -> callable(lq, tokens, lengths) -> SROutput) and write the report.

    ``results.json`` records the data (format, absolute root, split, scale) and, as
    ``"inputs"``, what the caller passes (``tgsr eval``: the command, model folders, config,
    overrides, DAMSM folders). ``out_dir`` is created only once every model has been scored."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TGSRError(f"{out_dir} is a file, not a report folder")
    ec, data = cfg.eval, cfg.data
    torch.manual_seed(ec.seed)
    test_data = eval_data_config(data, data.eval_split, ec.num_images)
    test = collect(build_dataset(test_data, vocab, train=False), ec.batch_size, ec.num_images)
    gt, lq, captions = test["gt"], test["lq"], test["caption"]
    results: dict = {"models": {}, "notes": {}, "num_images": len(captions),
                     "split": data.eval_split}  # fmt: skip
    results["data"] = {"format": data.format, "root": _abs(data.root), "split": data.eval_split,
                       "scale": data.scale, "degradation": data.degradation}  # fmt: skip
    if inputs:
        results["inputs"] = dict(inputs)
    scorers = _damsm_scorers(cfg, eval_damsm, train_damsm, results["notes"])
    shapecaps = ShapeCapsEval(test, cfg, vocab) if data.format == "synthetic" else None

    outputs: dict[str, SROutput] = {}
    tim_images: dict[tuple[str, str], torch.Tensor] = {}  # per-image TIM, for the GT comparison
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("evaluate", total=len(models), info="")
        for name, model in models.items():
            bar.update(task, info=name)
            out = run_model(model, lq, test["tokens"], test["length"], ec.batch_size)
            outputs[name] = out
            r = _pixel_metrics(out.sr, gt, lq, data.scale, data.degradation)
            for tag, sc in scorers.items():
                s = sc.score(out.sr, captions, ec.batch_size)
                r["tim" + tag], r["r_precision" + tag] = s["tim"], s["r_precision"]
                tim_images[(name, tag)] = s["tim_per_image"]
                if s["rp_note"]:
                    results["notes"]["r_precision"] = s["rp_note"]
            r.update(_perceptual_metrics(out.sr, gt, cfg))
            if shapecaps is not None:  # the ShapeCaps protocol's scores and edited outputs
                scores, edited = shapecaps.score(model, out.sr, lq)
                r.update(scores)
                outputs.update({f"{name}/{k}": v for k, v in edited.items()})
            results["models"][name] = r
            bar.advance(task)
    results["models"]["gt"] = _gt_row(gt, captions, scorers, tim_images, results, shapecaps,
                                      ec.batch_size)  # fmt: skip
    if shapecaps is not None:
        results["benchmark"] = shapecaps.summary()
    if "r_precision" in results["notes"]:
        console.print(f"[yellow]note: R-precision: {results['notes']['r_precision']}[/]")
    # the folder is made only now: a run that fails on its data or a model leaves nothing behind
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    figures = _figures(models, outputs, test, vocab, out_dir / "figures", shapecaps)
    paths = write_report(out_dir, results, {**(extra_figures or {}), **figures}, meta or {})
    console.print(f"report: {paths['html']}")
    return results


def _figures(models, outputs, test, vocab, fig_dir: Path, shapecaps) -> dict:
    """Side-by-side comparison, the TGSR model's word attention and (ShapeCaps) its edits."""
    lq, gt, captions = test["lq"], test["gt"], test["caption"]
    text_model = next((m for m in models if getattr(models[m], "uses_text", False)), None)
    k = min(6, len(captions))
    others = [m for m in models if m not in (text_model, "bicubic", "baseline")]
    order = ["LR", "bicubic", "no-text baseline", *others, "TGSR coarse", "TGSR fine", "GT"]
    rows = []
    for i in range(k):
        row = {"LR": lq[i], "GT": gt[i]}
        if "bicubic" in outputs:
            row["bicubic"] = outputs["bicubic"].sr[i]
        if "baseline" in outputs:
            row["no-text baseline"] = outputs["baseline"].sr[i]
        for m in others:
            row[m] = outputs[m].sr[i]
        if text_model:
            if outputs[text_model].coarse is not None:
                row["TGSR coarse"] = outputs[text_model].coarse[i]
            row["TGSR fine"] = outputs[text_model].sr[i]
        rows.append(row)
    columns = [c for c in order if rows and c in rows[0]]
    under = ("the caption given to the text models is under each row" if text_model
             else "each row's caption is under it")  # fmt: skip
    grid = figs.comparison_grid(rows, order, fig_dir / "comparison.png", captions=captions[:k])
    figures = {"comparison": (grid, f"{' | '.join(columns)}; {under}.")}
    if text_model and outputs[text_model].attn is not None:
        words = vocab.decode(test["tokens"][0].tolist())
        figures["attention"] = figs.attention_figure(
            outputs[text_model].sr[0], words, outputs[text_model].attn[0],
            fig_dir / "attention.png",
        )  # fmt: skip
    if text_model and shapecaps is not None:
        own = {"test": outputs[text_model]} | {
            k: outputs[f"{text_model}/{k}"]
            for k in ("edit", "swap")
            if f"{text_model}/{k}" in outputs
        }
        edits = shapecaps.edits_figure(lq, captions, own, fig_dir / "edits.png")
        if edits is not None:
            figures["edits"] = edits
    return figures


# ----------------------------------------------------------------------------- CLI glue
def _abs(path) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def eval_command(model_args, config, data_root, out, eval_damsm, overrides, bicubic) -> str:
    """The ``tgsr eval`` command line that reproduces a run (every option that was given)."""
    argv = ["tgsr", "eval"]
    for arg in model_args:
        argv += ["--model", str(arg)]
    if config is not None:
        argv += ["--config", str(config)]
    if data_root is not None:
        argv += ["--data", str(data_root)]
    for override in overrides:
        argv += ["--set", str(override)]
    if eval_damsm is not None:
        argv += ["--eval-damsm", str(eval_damsm)]
    argv += ["--out", str(out)]
    if not bicubic:
        argv.append("--no-bicubic")
    return shlex.join(argv)


def evaluate_cli(model_args, config, data_root, out, eval_damsm, overrides, bicubic) -> dict:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TGSRError(f"--out {out} is a file, not a report folder")
    if eval_damsm is not None and not Path(eval_damsm).is_dir():
        raise TGSRError(f"--eval-damsm {eval_damsm}: no such DAMSM folder")
    if data_root is not None and not Path(data_root).expanduser().exists():
        raise TGSRError(f"--data {data_root}: no such data folder")
    models: dict[str, Callable] = {}
    model_dirs: dict[str, str] = {}
    cfg = None
    train_damsm_dir = None
    for arg in model_args:
        name, _, path = str(arg).rpartition("=")
        path = Path(path)
        sr_model, run_cfg = load_run(path)
        name = name or path.name
        if name in models:
            raise TGSRError(f"two --model arguments are named {name!r}: name them (NAME=DIR)")
        models[name] = sr_model
        model_dirs[name] = _abs(path)
        cfg = cfg or run_cfg
        if train_damsm_dir is None and (path / "damsm").is_dir():
            train_damsm_dir = path / "damsm"
    if cfg is None:
        raise TGSRError("give at least one --model")
    if config is not None:
        cfg = load_config(config, overrides)
    elif overrides:  # --data joins before validation (a --set data.format=... needs a root)
        merged = _deep_merge(config_to_dict(cfg), parse_overrides(overrides))
        if data_root is not None:
            merged.setdefault("data", {})["root"] = data_root
        cfg = config_from_dict(merged)
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if bicubic:
        if "bicubic" in models:
            raise TGSRError("a --model is named 'bicubic': rename it or pass --no-bicubic")
        models["bicubic"] = BicubicSR(cfg.data.scale)
    if eval_damsm is None:
        console.print("[yellow]no --eval-damsm: TIM / R-precision use the training DAMSM only[/]")
    train_pair = load_eval_damsm(train_damsm_dir)
    vocab = train_pair[2] if train_pair else None
    if vocab is None:
        vocab = build_vocabulary(cfg.data)
    eval_pair = load_eval_damsm(eval_damsm)
    command = eval_command(model_args, config, data_root, out, eval_damsm, overrides, bicubic)
    inputs = {"command": command, "models": model_dirs, "config": config,
              "data_root": _abs(cfg.data.root), "overrides": list(overrides),
              "eval_damsm": _abs(eval_damsm), "train_damsm": _abs(train_damsm_dir)}  # fmt: skip
    where = f" at {_abs(cfg.data.root)}" if cfg.data.root else ""
    meta = {"command": command, "models": ", ".join(f"{k}={v}" for k, v in model_dirs.items()),
            "data": f"{cfg.data.format}{where} ({cfg.data.eval_split} split)"}  # fmt: skip
    if overrides:
        meta["overrides"] = " ".join(overrides)
    results = evaluate(
        models, cfg, out, vocab=vocab, eval_damsm=eval_pair, train_damsm=train_pair, meta=meta,
        inputs=inputs,
    )  # fmt: skip
    console.print(f"reproduce with: {command}", markup=False, highlight=False, soft_wrap=True)
    return results
