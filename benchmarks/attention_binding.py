"""Which words each object of a two-object ShapeCaps scene reads, TAM by TAM.

    python benchmarks/attention_binding.py RUN_DIR [RUN_DIR ...] [--scenes 300]

RUN_DIR is a training run folder (``OUT/runs/tgsr`` of ``tgsr quickstart``, or a run of
``benchmarks/ablations.py``). For every object of the two-object test scenes, the caption is cut
into one phrase per object as ``parse_caption`` cuts it (``object_spans``; the phrase's object
is the one on the side the caption gives it), and the word maps of each TAM are averaged over
the object's box at that stage's resolution: the attention mass on the object's own phrase,
on the other object's phrase, the share of objects with more mass on their own phrase, and the
entropy of the maps (nats; log(T) is uniform over T words). A model that has bound the words to
their objects reads its own phrase at some stage; one that has not splits its attention.
Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch

from tgsr.data.synthetic import SyntheticDataset
from tgsr.data.synthetic_text import object_spans, parse_caption
from tgsr.run_folder import read_run


def object_phrases(
    caption: str, attrs: dict
) -> list[tuple[dict, tuple[int, int], tuple[int, int]]]:
    """(object record, own token span, other token span) per object whose phrase is known."""
    spans = object_spans(caption)
    parsed = parse_caption(caption)["objects"]
    if len(spans) != 2 or len(parsed) != 2:
        return []
    out = []
    for k in range(2):
        side = parsed[k].get("position")
        obj = next((o for o in attrs["objects"] if o["position"] == side), None)
        if obj is not None:
            out.append((obj, spans[k][1:], spans[1 - k][1:]))
    return out


def measure(run: Path, scenes: int) -> dict:
    model = read_run(run)
    cfg = model.config
    syn = dataclasses.replace(cfg.data.synthetic, split="test", num=scenes)
    data = SyntheticDataset(dataclasses.replace(cfg.data, synthetic=syn), model.vocab, train=False)
    items = [data[i] for i in range(scenes)]
    items = [x for x in items if len(json.loads(x["attributes"])["objects"]) == 2]
    sums: dict[int, dict[str, float]] = {}
    with torch.no_grad():
        tokens = torch.stack([x["tokens"] for x in items])
        length = torch.tensor([int(x["length"]) for x in items])
        text = model.text_encoder.encode(tokens, length)
        lq = torch.stack([x["lq"] for x in items])
        maps = model.generator(lq, text.words, text.sentence, text.token_mask).attn
    for b, item in enumerate(items):
        attrs = json.loads(item["attributes"])
        for obj, (s, e), (s2, e2) in object_phrases(item["caption"], attrs):
            for k, m in enumerate(maps):
                f = m.shape[-1] / attrs["size"]
                x0, y0, x1, y1 = (int(round(v * f)) for v in obj["bbox"])
                region = m[b, :, y0:y1, x0:x1].float()  # (T, h, w)
                own, other = region[s:e].sum(0).mean(), region[s2:e2].sum(0).mean()
                p = region.clamp_min(1e-12)
                entropy = (-(p * p.log()).sum(0)).mean()
                acc = sums.setdefault(k, {"own": 0.0, "other": 0.0, "own_wins": 0, "entropy": 0.0,
                                          "objects": 0, "size": m.shape[-1]})  # fmt: skip
                acc["own"] += float(own)
                acc["other"] += float(other)
                acc["own_wins"] += int(own > other)
                acc["entropy"] += float(entropy)
                acc["objects"] += 1
    stages = []
    for k in sorted(sums):
        a, n = sums[k], sums[k]["objects"]
        stages.append({"tam": k + 1, "size": a["size"], "own": round(a["own"] / n, 3),
                       "other": round(a["other"] / n, 3), "own_wins": round(a["own_wins"] / n, 3),
                       "entropy": round(a["entropy"] / n, 2), "objects": n})  # fmt: skip
    words = float(length[length > 0].float().mean())
    return {"run": str(run), "mean_words": round(words, 1),
            "uniform_entropy": round(math.log(words), 2), "tams": stages}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument(
        "--scenes", type=int, default=300, help="test scenes (about half have two objects)"
    )
    a = p.parse_args()
    for run in a.runs:
        print(json.dumps(measure(run, a.scenes), indent=1))


if __name__ == "__main__":
    main()
