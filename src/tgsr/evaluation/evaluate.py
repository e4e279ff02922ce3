"""The evaluation driver behind ``tgsr eval`` and the quickstart.

For every model (TGSR runs, a no-text baseline, bicubic) on the evaluation split:
PSNR / SSIM on Y (border = scale), LR-consistency PSNR, TIM (Eq. 8) and R-precision with an
**independent** evaluation DAMSM (and, second, with the DAMSM the TIC loss trained against),
LPIPS / FID / NIQE when their weights exist (otherwise "unavailable" with the reason), and on the
controlled benchmark the exact pattern accuracy, edit success and swap success.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tgsr.config import Config, DataConfig, load_config
from tgsr.errors import ModelFormatError, TGSRError
from tgsr.training.common import console, make_progress


# ----------------------------------------------------------------------------- models
@dataclass
class SROutput:
    sr: torch.Tensor
    coarse: torch.Tensor | None = None
    attn: torch.Tensor | None = None  # (B, T, h, w) of the last TAM


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
        from tgsr.data.degradations import imresize

        return SROutput(imresize(lq, self.scale, method="bicubic").clamp(0, 1))


def load_run(run_dir: str | Path):
    """(GeneratorSR, Config) from a training run folder."""
    from tgsr.models.serialization import load_generator

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "generator").is_dir():
        raise ModelFormatError(
            f"{run_dir}: not a tgsr run folder (needs config.yaml and generator/)"
        )
    cfg = load_config(run_dir / "config.yaml")
    generator = load_generator(run_dir / "generator")
    text_encoder = None
    if getattr(generator, "use_text", False):
        from tgsr.export import run_text_encoder

        text_encoder, _ = run_text_encoder(run_dir, cfg)
    return GeneratorSR(generator, text_encoder), cfg


def load_eval_damsm(path: str | Path | None):
    if path is None:
        return None
    from tgsr.training.trainer import load_frozen_damsm

    te, ie, vocab = load_frozen_damsm(path, need_image_encoder=True)
    return te, ie, vocab


# ----------------------------------------------------------------------------- data
def eval_data_config(data: DataConfig, split: str, num: int | None) -> DataConfig:
    if data.format == "synthetic":
        syn = dataclasses.replace(data.synthetic, split=split, num=num or 300)
        return dataclasses.replace(data, synthetic=syn)
    return dataclasses.replace(data, split=split)


def _collect(dataset, batch_size: int, limit: int | None) -> dict:
    """The evaluation set as stacked tensors / lists (small sets; real sets are streamed)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out: dict = {}
    n = 0
    for batch in loader:
        for k, v in batch.items():
            out.setdefault(k, []).append(v)
        n += len(batch["key"])
        if limit and n >= limit:
            break
    for k, v in list(out.items()):
        if torch.is_tensor(v[0]):
            out[k] = torch.cat(v)[:limit] if limit else torch.cat(v)
        else:
            flat = [x for chunk in v for x in chunk]
            out[k] = flat[:limit] if limit else flat
    return out


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


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
        enc = [self.vocab.encode(c, self.max_words) for c in captions]
        tokens = torch.tensor([e.ids for e in enc], dtype=torch.long)
        lengths = torch.tensor([e.length for e in enc], dtype=torch.long)
        return self.te.encode(tokens, lengths)

    @torch.no_grad()
    def score(self, images: torch.Tensor, captions: list[str], batch_size: int) -> dict:
        from tgsr.models.damsm import r_precision, tim

        tims, globs, sents = [], [], []
        for sl in _batches(len(captions), batch_size):
            text = self.encode_captions(captions[sl])
            regions, glob = self.ie(images[sl].float())
            tims.append(tim(regions, text.words, text.token_mask, self.g1, self.g2))
            globs.append(glob)
            sents.append(text.sentence)
        rp = r_precision(torch.cat(globs), torch.cat(sents), self.rp_candidates, self.seed)
        per_image = torch.cat(tims).float().cpu()
        return {"tim": float(per_image.mean()), "tim_per_image": per_image,
                "r_precision": rp.value, "rp_note": rp.note}  # fmt: skip


def _pixel_metrics(
    sr: torch.Tensor, gt: torch.Tensor, lq: torch.Tensor, scale: int, method: str
) -> dict:
    from tgsr.evaluation.metrics import lr_psnr, psnr_y, ssim_y

    return {
        "psnr": float(psnr_y(sr, gt, border=scale).mean()),
        "ssim": float(ssim_y(sr, gt, border=scale).mean()),
        "lr_psnr": float(lr_psnr(sr, lq, scale, method).mean()),
    }


def _run(model: Callable, lq, tokens, lengths, batch_size: int) -> SROutput:
    srs, coarse, attn = [], [], []
    for sl in _batches(len(lq), batch_size):
        out = model(lq[sl], tokens[sl], lengths[sl])
        srs.append(out.sr.float())
        if out.coarse is not None:
            coarse.append(out.coarse.float().clamp(0, 1))
        if out.attn is not None and not attn:
            attn.append(out.attn.float())
    return SROutput(
        torch.cat(srs), torch.cat(coarse) if coarse else None, attn[0] if attn else None
    )


def _encode(vocab, captions: list[str], max_words: int):
    enc = [vocab.encode(c, max_words) for c in captions]
    return (
        torch.tensor([e.ids for e in enc], dtype=torch.long),
        torch.tensor([e.length for e in enc], dtype=torch.long),
    )


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
) -> dict:
    """Score ``models`` (name -> callable(lq, tokens, lengths) -> SROutput) and write the report."""
    from tgsr.data.loader import build_dataset
    from tgsr.evaluation import figures as figs
    from tgsr.evaluation.niqe import mean_niqe
    from tgsr.evaluation.perceptual import FIDMetric, LPIPSMetric
    from tgsr.evaluation.report import write_report

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    ec, data = cfg.eval, cfg.data
    synthetic = data.format == "synthetic"
    scale, method = data.scale, data.degradation
    torch.manual_seed(ec.seed)

    test = _collect(
        build_dataset(eval_data_config(data, data.eval_split, ec.num_images), vocab, train=False),
        ec.batch_size, ec.num_images,
    )  # fmt: skip
    gt, lq, captions = test["gt"], test["lq"], test["caption"]
    tokens, lengths = test["tokens"], test["length"]
    n = len(captions)
    scorers = {}
    for tag, pair in (("", eval_damsm), ("_train_encoder", train_damsm)):
        if pair is not None:
            te, ie, dvocab = pair
            scorers[tag] = DAMSMScorer(te, ie, dvocab, cfg.damsm.gamma1, cfg.damsm.gamma2,
                                       data.max_words, ec.r_precision_candidates, ec.seed)  # fmt: skip
    results: dict = {"models": {}, "notes": {}, "num_images": n, "split": data.eval_split}
    if not scorers:
        results["notes"]["tim"] = "unavailable: no DAMSM given (--eval-damsm)"
    if "" not in scorers and "_train_encoder" in scorers:
        results["notes"]["tim"] = (
            "no independent evaluation DAMSM given: only the training DAMSM's scores"
        )

    bench = None
    if synthetic:
        from tgsr.evaluation import benchmark as bench

        attrs = [json.loads(a) for a in test["attributes"]]
        comp = _collect(
            build_dataset(eval_data_config(data, "compositional", ec.num_images), vocab, train=False),
            ec.batch_size, ec.num_images,
        )  # fmt: skip
        comp_attrs = [json.loads(a) for a in comp["attributes"]]
        from tgsr.data.synthetic_text import make_caption

        rng = random.Random(ec.seed)
        editable = [i for i, a in enumerate(attrs) if bench.can_edit(a, "one")]
        edits = {i: bench.make_edit(attrs[i], rng, kind="one") for i in editable}
        edit_caps = {i: make_caption(e, rng) for i, e in edits.items()}
        two = [i for i, a in enumerate(attrs) if bench.can_edit(a, "swap")]
        swaps = {i: bench.make_edit(attrs[i], rng, kind="swap") for i in two}
        swap_caps = {i: make_caption(e, rng) for i, e in swaps.items()}
        edit_idx = torch.tensor(editable, dtype=torch.long)
        edit_tok = _encode(vocab, [edit_caps[i] for i in editable], data.max_words)
        swap_idx = torch.tensor(two, dtype=torch.long)
        swap_tok = _encode(vocab, [swap_caps[i] for i in two], data.max_words)

    outputs: dict[str, SROutput] = {}
    tim_images: dict[tuple[str, str], torch.Tensor] = {}  # per-image TIM, for the GT comparison
    names = list(models)
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("evaluate", total=len(names), info="")
        for name in names:
            bar.update(task, info=name)
            model = models[name]
            out = _run(model, lq, tokens, lengths, ec.batch_size)
            outputs[name] = out
            r = _pixel_metrics(out.sr, gt, lq, scale, method)
            for tag, sc in scorers.items():
                s = sc.score(out.sr, captions, ec.batch_size)
                r["tim" + tag], r["r_precision" + tag] = s["tim"], s["r_precision"]
                tim_images[(name, tag)] = s["tim_per_image"]
                if s["rp_note"]:
                    results["notes"]["r_precision"] = s["rp_note"]
            lp = LPIPSMetric(ec.lpips_weights)
            if lp.available:
                lp.update(out.sr, gt)
            r["lpips"] = (
                {"value": lp.compute(), "reason": lp.reason} if not lp.available else lp.compute()
            )
            if ec.niqe:
                value, reason = mean_niqe(out.sr, border=scale)
                r["niqe"] = value if reason is None else {"value": None, "reason": reason}
            if ec.fid:
                fid = FIDMetric()
                if fid.available:
                    fid.update(out.sr, gt)
                r["fid"] = fid.compute() if fid.available else {"value": None, "reason": fid.reason}
            if bench is not None:
                pa = bench.pattern_accuracy(out.sr, attrs)
                for key in ("pattern_accuracy", "pattern_accuracy_one_object",
                            "pattern_accuracy_two_objects"):  # fmt: skip
                    r[key] = pa[key]
                comp_out = _run(model, comp["lq"], comp["tokens"], comp["length"], ec.batch_size)
                r["pattern_accuracy_compositional"] = bench.pattern_accuracy(
                    comp_out.sr, comp_attrs)["pattern_accuracy"]  # fmt: skip
                ed = _run(model, lq[edit_idx], *edit_tok, ec.batch_size)
                ok = bench.edit_success(ed.sr, [attrs[i] for i in editable],
                                        [edits[i] for i in editable])  # fmt: skip
                r["edit_success"] = float(np.mean(ok)) if len(ok) else None
                outputs[name + "/edit"] = ed
                if two:
                    sw = _run(model, lq[swap_idx], *swap_tok, ec.batch_size)
                    ok = bench.swap_success(sw.sr, [attrs[i] for i in two], [swaps[i] for i in two])
                    r["swap_success"] = float(np.mean(ok))
                    outputs[name + "/swap"] = sw
            results["models"][name] = r
            bar.advance(task)
    gt_row: dict = {}
    for tag, sc in scorers.items():
        s = sc.score(gt, captions, ec.batch_size)
        gt_row["tim" + tag], gt_row["r_precision" + tag] = s["tim"], s["r_precision"]
        for (name, tag_), per_image in tim_images.items():  # paired: same captions, same images
            if tag_ == tag:
                diff = per_image - s["tim_per_image"]
                row = results["models"][name]
                row["tim_minus_gt" + tag] = float(diff.mean())
                row["tim_minus_gt_sem" + tag] = float(diff.std() / len(diff) ** 0.5)
    if bench is not None:
        gt_row["pattern_accuracy"] = bench.pattern_accuracy(gt, attrs)["pattern_accuracy"]
    results["models"]["gt"] = gt_row
    if bench is not None:
        results["benchmark"] = {
            "chance_pattern_accuracy": bench.chance_level(),
            "num_compositional": len(comp_attrs),
            "num_two_object_scenes": len(two),
        }

    # ---- figures --------------------------------------------------------------------------
    figures = dict(extra_figures or {})
    k = min(6, n)
    order = ["LR", "bicubic", "no-text baseline", "TGSR coarse", "TGSR fine", "GT"]
    rows = []
    for i in range(k):
        row = {"LR": lq[i], "GT": gt[i]}
        if "bicubic" in outputs:
            row["bicubic"] = outputs["bicubic"].sr[i]
        if "baseline" in outputs:
            row["no-text baseline"] = outputs["baseline"].sr[i]
        text_model = next((m for m in names if getattr(models[m], "uses_text", False)), None)
        if text_model:
            if outputs[text_model].coarse is not None:
                row["TGSR coarse"] = outputs[text_model].coarse[i]
            row["TGSR fine"] = outputs[text_model].sr[i]
        rows.append(row)
    figures["comparison"] = figs.comparison_grid(rows, order, out_dir / "figures" / "comparison.png",
                                                 captions=captions[:k])  # fmt: skip
    text_model = next((m for m in names if getattr(models[m], "uses_text", False)), None)
    if text_model and outputs[text_model].attn is not None:
        words = vocab.decode(tokens[0].tolist())
        figures["attention"] = figs.attention_figure(
            outputs[text_model].sr[0], words, outputs[text_model].attn[0],
            out_dir / "figures" / "attention.png",
        )  # fmt: skip
    if text_model and bench is not None and editable:
        idx = two[0] if two else editable[0]
        caps = [captions[idx], edit_caps[idx]] + ([swap_caps[idx]] if idx in swap_caps else [])
        outs = [outputs[text_model].sr[idx], outputs[text_model + "/edit"].sr[editable.index(idx)]]
        if idx in swap_caps:
            outs.append(outputs[text_model + "/swap"].sr[two.index(idx)])
        figures["edits"] = figs.edit_rows(lq[idx], caps, outs, out_dir / "figures" / "edits.png")
    paths = write_report(out_dir, results, figures, meta or {})
    console.print(f"report: {paths['html']}")
    return results


# ----------------------------------------------------------------------------- CLI glue
def evaluate_cli(model_args, config, data_root, out, eval_damsm, overrides, bicubic) -> dict:
    models: dict[str, Callable] = {}
    cfg = None
    train_damsm_dir = None
    for arg in model_args:
        name, _, path = str(arg).rpartition("=")
        path = Path(path)
        sr_model, run_cfg = load_run(path)
        name = name or path.name
        models[name] = sr_model
        cfg = cfg or run_cfg
        if train_damsm_dir is None and (path / "damsm").is_dir():
            train_damsm_dir = path / "damsm"
    if config is not None:
        cfg = load_config(config, overrides)
    elif overrides:
        from tgsr.config import (
            _deep_merge,  # noqa: PLC2701
            config_from_dict,
            config_to_dict,
            parse_overrides,
        )

        cfg = config_from_dict(_deep_merge(config_to_dict(cfg), parse_overrides(overrides)))
    if cfg is None:
        raise TGSRError("give at least one --model")
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if bicubic:
        models["bicubic"] = BicubicSR(cfg.data.scale)
    if eval_damsm is None:
        console.print("[yellow]no --eval-damsm: TIM / R-precision use the training DAMSM only[/]")
    train_pair = load_eval_damsm(train_damsm_dir)
    vocab = train_pair[2] if train_pair else None
    if vocab is None:
        from tgsr.data.loader import build_vocabulary

        vocab = build_vocabulary(cfg.data)
    return evaluate(
        models, cfg, out, vocab=vocab, eval_damsm=load_eval_damsm(eval_damsm),
        train_damsm=train_pair, meta={"command": "tgsr eval " + " ".join(map(str, model_args))},
    )  # fmt: skip
