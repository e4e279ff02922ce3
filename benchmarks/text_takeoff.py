"""When does the generator start to follow the caption? A learning curve in optimizer steps.

    python benchmarks/text_takeoff.py NAME DAMSM_DIR STEPS [k=v overrides ...]

Trains the quickstart preset (plus the overrides, e.g. ``train.text_encoder=scratch``,
``loss.tic=0``, ``train.batch_size=16``) on the synthetic benchmark with the DAMSM in DAMSM_DIR
(for example ``OUT/damsm`` of a quickstart run) and, every ``EVAL`` steps (environment, default
250), prints one JSON line: pattern accuracy on 256 test scenes (one- and two-object) of the raw
and of the EMA generator, the losses, device and versions. ``MAXSEC`` (environment) stops it
early. Runs on CUDA when present (the numbers in docs/quickstart.md came from eight of these
side by side on one H200), else on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import sys
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from tgsr.config import load_config
from tgsr.data.degradations import build_pyramids
from tgsr.data.loader import build_dataset
from tgsr.evaluation import shapecaps as bench
from tgsr.losses import LossSuite
from tgsr.models import build_generator
from tgsr.models.serialization import load_damsm
from tgsr.training.trainer import conditioning_encoder


def main() -> None:
    name, damsm_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    overrides = sys.argv[4:]
    every, max_sec = int(os.environ.get("EVAL", 250)), float(os.environ.get("MAXSEC", 1e9))
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    cfg = load_config("quickstart", overrides)
    damsm, vocab = load_damsm(damsm_dir)
    frozen, image_encoder = damsm.text_encoder.to(dev).eval(), damsm.image_encoder.to(dev).eval()
    frozen.requires_grad_(False)
    image_encoder.requires_grad_(False)
    cond = conditioning_encoder(cfg.train.text_encoder, frozen, len(vocab), cfg).to(dev)
    trained = cond is not frozen
    data = build_dataset(cfg.data, vocab, train=True)
    train = iter(DataLoader(data, batch_size=cfg.train.batch_size, drop_last=True,
                            num_workers=cfg.data.num_workers))  # fmt: skip
    syn = dataclasses.replace(cfg.data.synthetic, split="test", num=256)
    test_data = build_dataset(dataclasses.replace(cfg.data, synthetic=syn), vocab, train=False)
    test = next(iter(DataLoader(test_data, batch_size=256)))
    gen = build_generator(cfg, frozen.feature_dim)
    gen = gen.to(dev, memory_format=torch.channels_last)
    params = list(gen.parameters()) + (list(cond.parameters()) if trained else [])
    opt = torch.optim.Adam(params, cfg.train.lr, betas=tuple(cfg.train.betas))
    decay = get_ema_multi_avg_fn(cfg.train.ema_decay or 0.98)
    ema = AveragedModel(gen, multi_avg_fn=decay, use_buffers=True)
    ema_cond = AveragedModel(cond, multi_avg_fn=decay) if trained else None
    suite = LossSuite(cfg.loss, cfg.generator, cfg.damsm)
    amp = cfg.train.mixed_precision == "bf16"

    def to_dev(batch):
        return {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}

    def score(model, encoder) -> dict:
        model.eval()
        with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=amp):
            t = encoder.encode(test_d["tokens"], test_d["length"])
            sr = model(test_d["lq"], t.words, t.sentence, t.token_mask).sr
        model.train()
        s = bench.pattern_accuracy(sr.float().clamp(0, 1).cpu(), list(test["attributes"]))
        keys = ("pattern_accuracy_one_object", "pattern_accuracy_two_objects",
                "pattern_type_accuracy")  # fmt: skip
        return {k: round(s[k], 3) for k in keys}

    test_d = to_dev(test)
    start = time.time()
    for step in range(1, steps + 1):
        batch = to_dev(next(train))
        with torch.no_grad():
            text = frozen.encode(batch["tokens"], batch["length"])
            gt_levels, lowpass = build_pyramids(batch["gt"], cfg.data.scale,
                                                cfg.data.lowpass_sigma, cfg.data.degradation)  # fmt: skip
        c = cond.encode(batch["tokens"], batch["length"]) if trained else text
        with torch.autocast(dev.type, torch.bfloat16, enabled=amp):
            out = gen(batch["lq"].contiguous(memory_format=torch.channels_last),
                      c.words, c.sentence, c.token_mask)  # fmt: skip
            loss, values = suite.generator_loss(out, batch, gt_levels, lowpass, text,
                                                damsm_image_encoder=image_encoder)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        opt.step()
        ema.update_parameters(gen)
        if trained:
            ema_cond.update_parameters(cond)
        last = step == steps or time.time() - start > max_sec
        if step % every and not last:
            continue
        ema_encoder = copy.deepcopy(ema_cond.module).eval() if trained else frozen
        raw_encoder = copy.deepcopy(cond).eval() if trained else frozen
        print(json.dumps({
            "name": name, "step": step, "seconds": round(time.time() - start, 1),
            "losses": {k: round(v, 5) for k, v in values.items()},
            "raw": score(gen, raw_encoder), "ema": score(ema.module, ema_encoder),
            "overrides": overrides, "chance": bench.chance_level(),
            "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(),
        }), flush=True)  # fmt: skip
        if last:
            break


if __name__ == "__main__":
    main()
