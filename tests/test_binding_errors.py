"""The sentence-form classifier (``synthetic_text.caption_form``) and the per-form tally of
``benchmarks/binding_errors.py``."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from helpers_pipeline import make_run_dir
from tgsr.data import synthetic as S
from tgsr.data import synthetic_text as T

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "binding_errors", REPO / "benchmarks" / "binding_errors.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["binding_errors"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("binding_errors", None)


def test_caption_form_names_every_template():
    a, b = "a red and cyan striped circle", "a blue square"
    for pos in T._POS_AFTER:
        left, right = pos.format(p="left"), pos.format(p="right")
        assert T.caption_form(f"{a} {left} and {b} {right}") == "position_after_both"
        assert T.caption_form(f"{a} {left} and {b}") == "position_after_one"
    for pos in T._POS_BEFORE:
        left, right = pos.format(p="left"), pos.format(p="right")
        assert T.caption_form(f"{left} {a}, {right} {b}") == "position_before"
    for rel in T._RELATIONS:
        assert T.caption_form(f"{a} {rel.format(p='right')} {b}") == "relation"
    forms = set()
    for seed in range(300):
        attrs = S.sample_scene(S.scene_seed(0, seed), "train", size=64)
        if len(attrs["objects"]) == 2:
            forms.add(T.caption_form(T.make_caption(attrs, random.Random(seed), "balanced")))
    assert forms == set(T.CAPTION_FORMS)


def test_score_tallies_every_patterned_object_under_every_caption(bench, tmp_path):
    run = make_run_dir(tmp_path / "run")
    report = bench.score(run, scenes=12, captions=3)
    assert report["objects"] == sum(report["counts"].values()) > 0
    per_form = report["by_form"]
    assert sum(v["objects"] for v in per_form.values()) == 3 * report["objects"]
    for key, v in per_form.items():
        form, shapes = key.split("/")
        assert form in T.CAPTION_FORMS and shapes in ("same_shape", "other_shape")
        assert v["right"] == round(v["counts"].get("right", 0) / v["objects"], 3)
    assert "by_form" not in bench.score(run, scenes=12, captions=0)
