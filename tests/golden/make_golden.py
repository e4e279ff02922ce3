"""Seeded golden cases: every case builds tiny modules and inputs from fixed seeds and returns a
few numbers of its outputs (``{quantity: [floats]}``). ``tests/test_golden.py`` compares them
with ``golden_values.json`` (fp32 on CPU, atol = rtol = 1e-4).

Print the values of the code on ``PYTHONPATH`` (or of the installed package)::

    python tests/golden/make_golden.py                 # JSON on stdout
    python tests/golden/make_golden.py --write         # overwrite tests/golden/golden_values.json
    python tests/golden/make_golden.py --add-missing   # a new preset: add its case, keep the rest

Regenerate the file only for a change that is meant to change the maths, and say so in the
commit. The values in the file were computed from a clean export of a commit::

    git archive HEAD | tar -x -C /tmp/tgsr_head
    PYTHONPATH=/tmp/tgsr_head/src python tests/golden/make_golden.py --write
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

GOLDEN_FILE = Path(__file__).with_name("golden_values.json")
WORD_DIM = 16  # word / sentence feature size of every tiny case
CHANNELS = 8  # generator width of every tiny case
LQ_SIZE = 4  # low-resolution side of the generator cases (x16: 64x64 outputs)
LENGTHS = (6, 3)  # real words of the two captions of the generator cases (T = 6)

Summary = dict[str, list[float]]


def _vals(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().double().flatten()]


def _stats(t: torch.Tensor) -> list[float]:
    t = t.detach().double()
    return [float(t.mean()), float(t.std()), float(t.abs().amax())]


def _text(b: int, t: int, lengths, seed: int):
    """Random word features (B, D, T) with zeros on padding, sentences (B, D), mask."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, WORD_DIM, t, generator=g)
    mask = torch.arange(t)[None] >= torch.tensor(lengths)[:, None]
    words = words.masked_fill(mask[:, None], 0.0)
    return words, torch.randn(b, WORD_DIM, generator=g), mask


# ----------------------------------------------------------------------------- generators


def preset_generator(preset: str, seed: int = 0):
    """The preset's generator with its every flag, shrunk to CHANNELS wide (module creation
    order, hence the seeded initial weights, is part of what the golden values pin)."""
    from tgsr.config import load_config
    from tgsr.training.trainer import build_generator

    cfg = load_config(preset, [f"generator.channels={CHANNELS}"])
    torch.manual_seed(seed)
    return build_generator(cfg, WORD_DIM), cfg.data.scale


def spread_weights(module: torch.nn.Module, seed: int) -> None:
    """Redraw every weight so that activations are O(1): He-normal matrices and kernels, vectors
    (biases, norm affines) moved by N(0, 0.1²). At PyTorch's default initialisation the TAM's
    attention is nearly uniform and the image heads start at a tenth, so a change of the maths
    there would move the outputs by less than the tolerance."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * math.sqrt(2.0 / p[0].numel()))
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def _checksum(module: torch.nn.Module) -> list[float]:
    """Sum and sum of squares of the initial weights (pins the initialisation itself)."""
    params = [p.detach().double() for p in module.parameters()]
    return [float(sum(p.sum() for p in params)), float(sum((p**2).sum() for p in params))]


def generator_case(preset: str) -> Summary:
    gen, scale = preset_generator(preset)
    init = _checksum(gen)
    spread_weights(gen, seed=12)
    g = torch.Generator().manual_seed(1)
    lq = torch.rand(2, 3, LQ_SIZE, LQ_SIZE, generator=g)
    gt = torch.rand(2, 3, LQ_SIZE * scale, LQ_SIZE * scale, generator=g)
    words, sentence, mask = _text(2, 6, LENGTHS, seed=2)
    out: Summary = {"init_checksum": init}
    with torch.no_grad():
        ev = gen.eval()(lq, words, sentence, mask)
    out["eval_sr_slice"] = _vals(ev.sr[1, :, -2:, -2:])  # the short caption, bottom-right
    out["eval_sr_stats"] = _stats(ev.sr)
    out["eval_coarse_mean"] = [float(c.double().mean()) for c in ev.coarse]
    out["eval_fine_std"] = [float(f.double().std()) for f in ev.fine]
    out["eval_attn_std"] = [float(a.double().std()) for a in ev.attn]
    tr = gen.train()(lq, words, sentence, mask)  # batch statistics where there is BatchNorm
    loss = sum(((f.float() - torch.nn.functional.interpolate(gt, size=f.shape[-2:])) ** 2).mean()
               for f in tr.fine + tr.coarse)  # fmt: skip
    loss.backward()
    out["train_sr_slice"] = _vals(tr.sr[0, :, :2, :2])
    out["train_loss"] = [float(loss.detach())]
    out["train_grad_norm"] = [
        float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in gen.parameters())))
    ]
    return out


# ----------------------------------------------------------------------------- DAMSM


def _damsm_inputs():
    g = torch.Generator().manual_seed(3)
    regions = torch.randn(4, WORD_DIM, 3, 3, generator=g)
    glob = torch.randn(4, WORD_DIM, generator=g)
    lengths = (5, 2, 0, 4)  # an empty caption included
    words, sentence, mask = _text_n(4, 5, lengths, g)
    class_ids = torch.tensor([0, 1, 0, 2])  # images 0 and 2 share a class
    return regions, glob, words, sentence, mask, class_ids


def _text_n(b, t, lengths, g):
    words = torch.randn(b, WORD_DIM, t, generator=g)
    mask = torch.arange(t)[None] >= torch.tensor(lengths)[:, None]
    words = words.masked_fill(mask[:, None], 0.0)
    sentence = torch.randn(b, WORD_DIM, generator=g) * (torch.tensor(lengths) > 0)[:, None]
    return words, sentence, mask


def damsm_losses_case() -> Summary:
    from tgsr.models.damsm import (
        damsm_loss,
        sentence_loss,
        sentence_scores,
        word_scores,
        words_loss,
    )

    regions, glob, words, sentence, mask, class_ids = _damsm_inputs()
    out: Summary = {"word_scores": _vals(word_scores(regions, words, mask, 4.0, 5.0))}
    out["sentence_scores"] = _vals(sentence_scores(glob, sentence))
    out["words_loss"] = _vals(torch.stack(words_loss(regions, words, mask, None, 4.0, 5.0, 10.0)))
    out["words_loss_classes"] = _vals(
        torch.stack(words_loss(regions, words, mask, class_ids, 4.0, 5.0, 10.0))
    )
    out["sentence_loss"] = _vals(torch.stack(sentence_loss(glob, sentence, class_ids, 10.0)))
    total, parts = damsm_loss(regions, glob, words, sentence, mask, class_ids, 5.0, 4.0, 8.0)
    out["damsm_loss_other_gammas"] = [float(total)] + [float(parts[k]) for k in sorted(parts)]
    return out


def tim_case() -> Summary:
    from tgsr.models.damsm import r_precision, tim

    regions, _, words, _, mask, _ = _damsm_inputs()
    score, attn = tim(regions, words, mask, return_attn=True)
    out: Summary = {"tim": _vals(score), "tim_attn_slice": _vals(attn[0, :, 0, :])}
    g = torch.Generator().manual_seed(4)
    glob = torch.randn(24, WORD_DIM, generator=g)
    sentences = glob + 1.5 * torch.randn(24, WORD_DIM, generator=g)  # noisy matches
    rp = r_precision(glob, sentences, num_candidates=8, seed=5)
    out["r_precision"] = [rp.value, float(rp.num_candidates)]
    return out


def _light_config():
    """The tiny light DAMSM image encoder of the cases: 4 channels, 32² input."""
    from tgsr.config import ImageEncoderConfig

    return ImageEncoderConfig(
        kind="light", feature_dim=WORD_DIM, light_channels=4, light_input_size=32
    )


def damsm_encoders_case() -> Summary:
    """The tiny DAMSM encoders and ``DAMSM.loss`` in training mode (dropout off)."""
    from tgsr.config import TextEncoderConfig
    from tgsr.models.damsm import DAMSM
    from tgsr.models.image_encoder import LightImageEncoder
    from tgsr.models.text_encoder import TextEncoder

    torch.manual_seed(6)
    text_encoder = TextEncoder(TextEncoderConfig(8, WORD_DIM // 2, dropout=0.0), 30)
    image_encoder = LightImageEncoder(_light_config())
    damsm = DAMSM(text_encoder, image_encoder).train()
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(2, 30, (4, 6), generator=g)
    lengths = torch.tensor([6, 2, 4, 1])
    tokens[torch.arange(6)[None] >= lengths[:, None]] = 0
    images = torch.rand(4, 3, 32, 32, generator=g)
    feats = text_encoder.encode(tokens, lengths)
    regions, glob = image_encoder(images)
    total, parts = damsm.loss(images, tokens, lengths, torch.tensor([0, 1, 2, 1]))
    return {
        "words_slice": _vals(feats.words[1, :4, :3]),
        "sentence_stats": _stats(feats.sentence),
        "regions_stats": _stats(regions),
        "global_slice": _vals(glob[0, :4]),
        "loss": [float(total.detach())] + [float(parts[k].detach()) for k in sorted(parts)],
    }


# ----------------------------------------------------------------------------- loss suite


def loss_terms_case() -> Summary:
    from tgsr.data.degradations import build_pyramids, lowpass
    from tgsr.losses.terms import bce_logits, pyramid_l2, tar_loss, tar_weight

    g = torch.Generator().manual_seed(8)
    gt = torch.rand(2, 3, 32, 32, generator=g)
    gt_levels, low_levels = build_pyramids(gt, 8, 2.0, "bicubic")
    outs = [torch.rand(level.shape, generator=g) for level in gt_levels]
    attn_logits = [torch.randn(2, 5, s, s, generator=g) for s in (4, 8, 16)]
    mask = torch.tensor([[False] * 4 + [True], [True] * 5])  # 4 real words; an empty caption
    attn = [torch.softmax(a.masked_fill(mask[:, :, None, None], -1e9), 1) for a in attn_logits]
    attn = [a.masked_fill(mask[:, :, None, None], 0.0) for a in attn]
    logits = torch.randn(6, generator=g) * 3
    return {
        "lowpass_slice": _vals(lowpass(gt, 2.0)[0, 0, :3, :3]),
        "pyramid_sizes": [float(x.shape[-1]) for x in gt_levels],
        "l2_lowpass": [float(pyramid_l2(outs, low_levels))],
        "l2_gt": [float(pyramid_l2(outs, gt_levels))],
        "tar_weight_top2": _stats(tar_weight(attn[1], mask, (16, 16), "top5", 2)),
        "tar_weight_top1": _vals(tar_weight(attn[0], mask, (8, 8), "top5", 1)[0, 0, 0, :4]),
        "tar_weight_max": _stats(tar_weight(attn[2], None, (32, 32), "max", 5)),
        "tar_top2": [float(tar_loss(outs, gt_levels, attn, mask, "top5", 2))],
        "tar_top5_all_words": [float(tar_loss(outs, gt_levels, attn, mask, "top5", 5))],
        "tar_max": [float(tar_loss(outs, gt_levels, attn, mask, "max", 5))],
        "bce": [float(bce_logits(logits, 1.0)), float(bce_logits(logits, 0.0))],
    }


def loss_suite_case() -> Summary:
    """The whole objective on a tiny paper-layout generator: every term, G and D sides."""
    from tgsr.config import (
        DAMSMConfig,
        DiscriminatorConfig,
        GeneratorConfig,
        LossConfig,
        load_config,
    )
    from tgsr.data.degradations import build_pyramids, degrade
    from tgsr.losses.suite import LossSuite
    from tgsr.models.discriminator import Discriminator
    from tgsr.models.image_encoder import LightImageEncoder
    from tgsr.models.text_encoder import TextFeatures
    from tgsr.training.trainer import build_generator

    cfg = load_config("ablations/tgsr", ["generator.channels=8", "data.scale=4"])
    torch.manual_seed(9)
    gen = build_generator(cfg, WORD_DIM).train()
    spread_weights(gen, seed=13)
    image_encoder = LightImageEncoder(_light_config()).eval().requires_grad_(False)
    disc = Discriminator(DiscriminatorConfig(4, conditional=True, norm="batch"), 32, 4, WORD_DIM)
    disc_sn = Discriminator(
        DiscriminatorConfig(4, conditional=False, norm="spectral"), 32, 4, WORD_DIM
    )
    g = torch.Generator().manual_seed(10)
    gt = torch.rand(3, 3, 32, 32, generator=g)
    lq = degrade(gt, 4).clamp(0, 1)
    words, sentence, mask = _text(3, 5, (5, 2, 3), seed=11)
    text = TextFeatures(words, sentence, mask)
    batch = {"gt": gt, "lq": lq, "class_id": torch.tensor([0, 1, 0])}
    gt_levels, low_levels = build_pyramids(gt, 4, 2.0)
    loss_cfg = LossConfig(l2=1.0, fine_l2=0.5, tar=1.0, tic=0.5, cgan=0.1, lr_consistency=0.2)
    suite = LossSuite(loss_cfg, cfg.generator, DAMSMConfig())
    out = gen(lq, words, sentence, mask)
    total, logs = suite.generator_loss(out, batch, gt_levels, low_levels, text, image_encoder, disc)
    total.backward()
    grad = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in gen.parameters()))
    d_total, d_logs = suite.discriminator_loss(out, batch, text, disc)
    suite_u = LossSuite(LossConfig(l2=1.0, tar=1.0, tic=0.0, cgan=0.1), GeneratorConfig())
    du_total, du_logs = suite_u.discriminator_loss(out, batch, None, disc_sn)
    return {
        "g_terms": [logs[k] for k in sorted(logs)],
        "g_grad_norm": [float(grad)],
        "d_terms": [d_logs[k] for k in sorted(d_logs)],
        "d_unconditional_spectral": [du_logs[k] for k in sorted(du_logs)],
    }


# ----------------------------------------------------------------------------- registry


def cases() -> dict[str, Callable[[], Summary]]:
    from tgsr.config import preset_names

    out: dict[str, Callable[[], Summary]] = {
        f"generator/{p}": (lambda p=p: generator_case(p)) for p in preset_names()
    }
    out.update({
        "damsm/losses": damsm_losses_case,
        "damsm/tim_r_precision": tim_case,
        "damsm/encoders": damsm_encoders_case,
        "losses/terms": loss_terms_case,
        "losses/suite": loss_suite_case,
    })  # fmt: skip
    return out


def compute(name: str) -> Summary:
    torch.set_num_threads(1)
    with torch.autocast("cpu", enabled=False):
        return cases()[name]()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"overwrite {GOLDEN_FILE.name}")
    parser.add_argument(
        "--add-missing", action="store_true", help="add the cases the file lacks, drop stale ones"
    )
    args = parser.parse_args(argv)
    import tgsr

    if args.add_missing:
        old = json.loads(GOLDEN_FILE.read_text())
        values = {name: old[name] if name in old else compute(name) for name in cases()}
        args.write = True
    else:
        values = {name: compute(name) for name in cases()}
    text = json.dumps(values, indent=1) + "\n"
    if args.write:
        GOLDEN_FILE.write_text(text)
        print(f"wrote {len(values)} cases from {Path(tgsr.__file__).parent} to {GOLDEN_FILE}")
    else:
        sys.stdout.write(text)
        print(f"# tgsr from {Path(tgsr.__file__).parent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
