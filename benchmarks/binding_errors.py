"""What a ShapeCaps model paints on two-object scenes: its own fill, the other object's, or neither.

    python benchmarks/binding_errors.py RUN_DIR [--scenes 400] [--captions 16] [--out F.json]

RUN_DIR is a training run folder (e.g. ``OUT/runs/tgsr`` of ``tgsr quickstart``, or a run of
``benchmarks/ablations.py``). Every patterned object of the two-object test scenes is scored as
the evaluation scores it (the nearest of the 32 pattern fills), then sorted into: right; the
other object's fill (the caption's words bound to the wrong shape); its own pattern in wrong
colours; the other object's pattern; anything else.

``counts`` / ``shares``: under each scene's evaluation caption. With ``--captions N``, each
scene is also upscaled under N more captions drawn as training captions are (natural forms,
fixed seeds), and ``by_form`` sorts those outcomes by the caption's sentence form
(``tgsr.data.synthetic_text.caption_form``) and by whether the two shapes are the same: the
evaluation captions are 3 % position-first sentences, so a form the model reads badly hardly
moves the headline accuracy. Prints (and with ``--out`` writes) one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import torch

from tgsr.data.synthetic import SyntheticDataset, fill_key
from tgsr.data.synthetic_text import caption_form, make_caption
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


def _outcomes(model, lq, captions, attrs) -> list[str]:
    """Upscale one LR scene under each caption; the outcome of every patterned object."""
    enc = [model.vocab.encode(c, model.config.data.max_words) for c in captions]
    tokens = torch.tensor([e.ids for e in enc])
    text = model.text_encoder.encode(tokens, torch.tensor([e.length for e in enc]))
    lq = lq[None].expand(len(captions), -1, -1, -1)
    sr = model.generator(lq, text.words, text.sentence, text.token_mask).sr.clamp(0, 1)
    objects = attrs["objects"]
    return [
        [classify(classify_fill(img, attrs, k), o, objects[1 - k])
         for k, o in enumerate(objects) if o["fill"] == "pattern"]
        for img in sr
    ]  # fmt: skip


def score(run: Path, scenes: int = 400, captions: int = 0) -> dict:
    model = read_run(run)
    cfg = model.config
    syn = dataclasses.replace(cfg.data.synthetic, split="test", num=scenes)
    data = SyntheticDataset(dataclasses.replace(cfg.data, synthetic=syn), model.vocab, train=False)
    counts: Counter = Counter()
    by_form: dict = defaultdict(Counter)
    with torch.no_grad():
        for i in range(scenes):
            item = data[i]
            attrs = json.loads(item["attributes"])
            objects = attrs["objects"]
            if len(objects) != 2 or all(o["fill"] != "pattern" for o in objects):
                continue
            drawn = [make_caption(attrs, random.Random(i * 1000 + j)) for j in range(captions)]
            results = _outcomes(model, item["lq"], [item["caption"], *drawn], attrs)
            counts.update(results[0])
            same = "same_shape" if objects[0]["shape"] == objects[1]["shape"] else "other_shape"
            for caption, outcome in zip(drawn, results[1:], strict=True):
                by_form[f"{caption_form(caption)}/{same}"].update(outcome)
    total = sum(counts.values())
    report = {"run": str(run), "objects": total,
              "shares": {k: round(v / total, 3) for k, v in counts.most_common()},
              "counts": dict(counts)}  # fmt: skip
    if captions:
        report["captions_per_scene"] = captions
        report["by_form"] = {
            key: {"objects": sum(c.values()), "right": round(c["right"] / sum(c.values()), 3),
                  "counts": dict(c)}
            for key, c in sorted(by_form.items())
        }  # fmt: skip
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--scenes", type=int, default=400)
    p.add_argument("--captions", type=int, default=0,
                   help="more captions per scene, sorted by sentence form (0: only the eval one)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    a = p.parse_args()
    report = score(a.run, a.scenes, a.captions)
    text = json.dumps(report, indent=1)
    if a.out:
        a.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
