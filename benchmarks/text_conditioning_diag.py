"""Text-conditioning diagnosis on one-object ShapeCaps scenes (numbers in docs/quickstart.md).

    python benchmarks/text_conditioning_diag.py MODE STEPS DAMSM_DIR [k=v overrides ...]

MODE: ``oracle`` (a one-hot code of the true fill replaces the words: can the decoder draw the
patterns at all?), ``words`` (the frozen DAMSM word features, as in training) or ``words_ft``
(the text encoder is fine-tuned together with the generator). Every 100 steps one JSON line:
losses, pattern accuracy on the training batch and on 96 test scenes, device and versions.
Measured in optimizer steps, so the result does not depend on machine load.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time

import torch
from torch.utils.data import DataLoader

from tgsr.config import load_config
from tgsr.data.degradations import build_pyramids
from tgsr.data.loader import build_dataset
from tgsr.data.synthetic import fill_key
from tgsr.evaluation import shapecaps as bench
from tgsr.losses import LossSuite
from tgsr.models import build_generator
from tgsr.models.serialization import load_damsm
from tgsr.models.text_encoder import TextFeatures


def main() -> None:
    mode, steps, damsm_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    overrides = sys.argv[4:]
    torch.manual_seed(0)
    one_object = ["data.synthetic.two_object_prob=0.0", "data.synthetic.solid_prob=0.0"]
    cfg = load_config("quickstart", one_object + overrides)
    damsm, vocab = load_damsm(damsm_dir)
    text_encoder = damsm.text_encoder.eval()
    finetune = mode == "words_ft"
    text_encoder.requires_grad_(finetune)
    train = iter(DataLoader(build_dataset(cfg.data, vocab, train=True), batch_size=32,
                            num_workers=1))  # fmt: skip
    syn = dataclasses.replace(cfg.data.synthetic, split="test", num=96)
    test_cfg = dataclasses.replace(cfg.data, synthetic=syn)
    test = next(iter(DataLoader(build_dataset(test_cfg, vocab, train=False), batch_size=96)))
    fills = sorted(set(bench.PATTERN_FILLS))

    def condition(batch) -> TextFeatures:
        with torch.set_grad_enabled(finetune):
            text = text_encoder.encode(batch["tokens"], batch["length"])
        if mode != "oracle":
            return text
        words = torch.zeros(len(batch["key"]), text.words.shape[1], 1)
        for i, rec in enumerate(batch["attributes"]):
            words[i, fills.index(fill_key(json.loads(rec)["objects"][0])), 0] = 1.0
        return TextFeatures(words, text.sentence, torch.zeros(len(words), 1, dtype=torch.bool))

    generator = build_generator(cfg.generator, text_encoder.feature_dim, 8)
    generator = generator.to(memory_format=torch.channels_last)
    params = list(generator.parameters()) + (list(text_encoder.parameters()) if finetune else [])
    optimizer = torch.optim.Adam(params, cfg.train.lr)
    suite = LossSuite(dataclasses.replace(cfg.loss, tic=0.0), cfg.generator, cfg.damsm)
    start = time.time()
    for step in range(1, steps + 1):
        batch = next(train)
        text = condition(batch)
        gt_levels, lowpass = build_pyramids(batch["gt"], 8, 2.0, "bicubic")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = generator(batch["lq"], text.words, text.sentence, text.token_mask)
            loss, values = suite.generator_loss(out, batch, gt_levels, lowpass, text)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), cfg.train.grad_clip)
        optimizer.step()
        if step % 100:
            continue
        generator.eval()
        with torch.no_grad():
            t = condition(test)
            sr = generator(test["lq"], t.words, t.sentence, t.token_mask).sr.float().clamp(0, 1)
        generator.train()
        scores = bench.pattern_accuracy(sr, list(test["attributes"]))
        on_batch = bench.pattern_accuracy(out.sr.detach().float().clamp(0, 1),
                                          list(batch["attributes"]))  # fmt: skip
        print(json.dumps({
            "mode": mode, "step": step, "seconds": round(time.time() - start, 1),
            "losses": {k: round(v, 5) for k, v in values.items()},
            "train_batch_accuracy": on_batch["pattern_accuracy"],
            "test_accuracy": scores["pattern_accuracy"],
            "test_pattern_type_accuracy": scores["pattern_type_accuracy"],
            "device": "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "overrides": overrides,
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
