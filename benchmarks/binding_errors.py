"""What a ShapeCaps model paints on two-object scenes: its own fill, the other object's, or neither.

    python benchmarks/binding_errors.py RUN_DIR [--scenes 400]

RUN_DIR is a training run folder (e.g. ``OUT/runs/tgsr`` of ``tgsr quickstart``, or a run of
``benchmarks/ablations.py``). Every patterned object of the two-object test scenes is scored as
the evaluation scores it (the nearest of the 32 pattern fills), then sorted into: right; the
other object's fill (the caption's words bound to the wrong shape); its own pattern in wrong
colours; the other object's pattern; anything else. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from pathlib import Path

import torch

from tgsr.data.synthetic import SyntheticDataset, fill_key
from tgsr.evaluation.shapecaps import classify_fill
from tgsr.run_folder import read_run


def classify(pred: tuple, obj: dict, other: dict) -> str:
    own = fill_key(obj)
    theirs = fill_key(other) if other["fill"] == "pattern" else None
    if pred == own:
        return "right"
    if pred == theirs:
        return "other_object_fill"
    if pred[0] == own[0]:
        return "own_pattern_wrong_colours"
    if theirs is not None and pred[0] == theirs[0]:
        return "other_object_pattern"
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--scenes", type=int, default=400)
    a = p.parse_args()
    model = read_run(a.run)
    cfg = model.config
    syn = dataclasses.replace(cfg.data.synthetic, split="test", num=a.scenes)
    data = SyntheticDataset(dataclasses.replace(cfg.data, synthetic=syn), model.vocab, train=False)
    counts: Counter = Counter()
    with torch.no_grad():
        for start in range(0, a.scenes, 50):
            items = [data[i] for i in range(start, min(start + 50, a.scenes))]
            lq = torch.stack([x["lq"] for x in items])
            tokens = torch.stack([x["tokens"] for x in items])
            length = torch.tensor([int(x["length"]) for x in items])
            text = model.text_encoder.encode(tokens, length)
            sr = model.generator(lq, text.words, text.sentence, text.token_mask).sr.clamp(0, 1)
            for item, img in zip(items, sr, strict=True):
                attrs = json.loads(item["attributes"])
                objects = attrs["objects"]
                if len(objects) != 2:
                    continue
                for k, obj in enumerate(objects):
                    if obj["fill"] == "pattern":
                        pred = classify_fill(img, attrs, k)
                        counts[classify(pred, obj, objects[1 - k])] += 1
    total = sum(counts.values())
    print(json.dumps({"run": str(a.run), "objects": total,
                      "shares": {k: round(v / total, 3) for k, v in counts.most_common()},
                      "counts": dict(counts)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
