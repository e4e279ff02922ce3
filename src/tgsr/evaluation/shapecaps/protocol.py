"""The ShapeCaps protocol that :func:`tgsr.evaluation.evaluate.evaluate` runs on the synthetic
data set, beside the metrics every data set gets (docs/quickstart.md):

* ``pattern_accuracy`` (overall, one-object and two-object scenes) on the test split and
  ``pattern_accuracy_compositional`` on the held-out colour-pair / pattern combinations;
* ``edit_success``: the same LR image super-resolved with a caption in which one object's fill
  is changed; every object must follow the edited caption;
* ``swap_success``: the same with the two objects' fills swapped (two-object scenes).

The edits are drawn once per evaluation from ``eval.seed``, so every model gets the same ones.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tgsr.config import Config
from tgsr.data.loader import build_dataset
from tgsr.data.synthetic_text import make_caption
from tgsr.evaluation.common import SROutput, collect, encode_captions, eval_data_config, run_model
from tgsr.evaluation.figures import edit_rows
from tgsr.evaluation.shapecaps.scorers import (
    can_edit,
    chance_level,
    edit_success,
    make_edit,
    pattern_accuracy,
    swap_success,
)

PATTERN_KEYS = ("pattern_accuracy", "pattern_accuracy_one_object", "pattern_accuracy_two_objects")


class ShapeCapsEval:
    """The protocol on one evaluation set: built once (records, compositional split, edited and
    swapped captions), then :meth:`score` per model, :meth:`score_gt`, :meth:`summary` and
    :meth:`edits_figure`. ``test``: the collected test split (its ``attributes`` records)."""

    def __init__(self, test: dict, cfg: Config, vocab):
        ec, data = cfg.eval, cfg.data
        self.batch_size = ec.batch_size
        self.attrs = [json.loads(a) for a in test["attributes"]]
        comp_data = eval_data_config(data, "compositional", ec.num_images)
        self.comp = collect(build_dataset(comp_data, vocab, train=False),
                            ec.batch_size, ec.num_images)  # fmt: skip
        self.comp_attrs = [json.loads(a) for a in self.comp["attributes"]]
        rng = random.Random(ec.seed)
        self.editable = [i for i, a in enumerate(self.attrs) if can_edit(a, "one")]
        self.edits = {i: make_edit(self.attrs[i], rng, kind="one") for i in self.editable}
        self.edit_caps = {i: make_caption(e, rng) for i, e in self.edits.items()}
        self.two = [i for i, a in enumerate(self.attrs) if can_edit(a, "swap")]
        self.swaps = {i: make_edit(self.attrs[i], rng, kind="swap") for i in self.two}
        self.swap_caps = {i: make_caption(e, rng) for i, e in self.swaps.items()}
        self.edit_tok = encode_captions(
            vocab, [self.edit_caps[i] for i in self.editable], data.max_words
        )
        self.swap_tok = encode_captions(
            vocab, [self.swap_caps[i] for i in self.two], data.max_words
        )

    def score(self, model: Callable, sr: torch.Tensor, lq: torch.Tensor):
        """-> (metrics, outputs): the model's scores given its outputs ``sr`` on the test split,
        and its outputs on the edited (``"edit"``) and swapped (``"swap"``) captions."""
        pa = pattern_accuracy(sr, self.attrs)
        r = {k: pa[k] for k in PATTERN_KEYS}
        comp = run_model(model, self.comp["lq"], self.comp["tokens"], self.comp["length"],
                         self.batch_size)  # fmt: skip
        r["pattern_accuracy_compositional"] = pattern_accuracy(comp.sr, self.comp_attrs)[
            "pattern_accuracy"
        ]
        edit_idx = torch.tensor(self.editable, dtype=torch.long)
        ed = run_model(model, lq[edit_idx], *self.edit_tok, self.batch_size)
        ok = edit_success(ed.sr, [self.attrs[i] for i in self.editable],
                          [self.edits[i] for i in self.editable])  # fmt: skip
        r["edit_success"] = float(np.mean(ok)) if len(ok) else None
        outputs: dict[str, SROutput] = {"edit": ed}
        if self.two:
            swap_idx = torch.tensor(self.two, dtype=torch.long)
            sw = run_model(model, lq[swap_idx], *self.swap_tok, self.batch_size)
            ok = swap_success(sw.sr, [self.attrs[i] for i in self.two],
                              [self.swaps[i] for i in self.two])  # fmt: skip
            r["swap_success"] = float(np.mean(ok))
            outputs["swap"] = sw
        return r, outputs

    def score_gt(self, gt: torch.Tensor) -> dict:
        """The ground truth's pattern accuracy (1.0 unless the scorer is wrong)."""
        return {"pattern_accuracy": pattern_accuracy(gt, self.attrs)["pattern_accuracy"]}

    def summary(self) -> dict:
        return {
            "chance_pattern_accuracy": chance_level(),
            "num_compositional": len(self.comp_attrs),
            "num_two_object_scenes": len(self.two),
        }

    def edits_figure(self, lq, captions: list[str], outputs: dict, path: Path) -> Path | None:
        """One scene (a two-object one if any) under its caption, the edited and the swapped
        caption. ``outputs``: the model's ``SROutput`` on the test split and from :meth:`score`."""
        if not self.editable:
            return None
        idx = self.two[0] if self.two else self.editable[0]
        caps = [captions[idx], self.edit_caps[idx]]
        outs = [outputs["test"].sr[idx], outputs["edit"].sr[self.editable.index(idx)]]
        if idx in self.swap_caps:
            caps.append(self.swap_caps[idx])
            outs.append(outputs["swap"].sr[self.two.index(idx)])
        return edit_rows(lq[idx], caps, outs, path)
