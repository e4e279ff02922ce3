"""Report files (results.json, report.md, report.html), headline table and figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from tgsr.evaluation import figures
from tgsr.evaluation.report import headline_table, metric_cell, print_headline, write_report

COLUMNS = ["LR", "bicubic", "no-text baseline", "TGSR coarse", "TGSR fine", "GT"]
NIQE_REASON = "n/a (images smaller than 96x96 after a 8-pixel border crop)"
LPIPS_REASON = "unavailable: LPIPS (alex) needs alexnet-owt-7be5be79.pth in /x/checkpoints"


def _img(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _results() -> dict:
    return {
        "models": {
            "bicubic": {
                "psnr": 21.5,
                "ssim": 0.61,
                "lr_psnr": 44.0,
                "tim": 0.1,
                "niqe": None,
                "lpips": None,
                "pattern_accuracy": 0.08,
            },
            "tgsr": {
                "psnr": 27.126,
                "ssim": 0.8312,
                "lr_psnr": 38.2,
                "tim": 0.5,
                "niqe": None,
                "lpips": None,
                "pattern_accuracy": 0.95,
                "fid": {"value": None, "reason": "n/a (FID needs at least 2 images, got 1)"},
                "per_split": {"test": 0.95, "compositional": 0.8},
            },
            "gt": {"tim": 0.7, "r_precision": 0.9},
        },
        "notes": {"niqe": NIQE_REASON, "lpips": LPIPS_REASON},
    }


def test_metric_cell():
    assert metric_cell("psnr", 27.126) == ("27.13", None)
    assert metric_cell("niqe", None, NIQE_REASON) == ("n/a", NIQE_REASON)
    assert metric_cell("lpips", None, LPIPS_REASON)[0] == "unavailable"
    assert metric_cell("psnr", float("inf"))[0] == "∞"


def test_headline_table_moves_empty_columns_to_notes():
    table = headline_table(_results())
    lines = table.splitlines()
    assert lines[0].startswith("| model | PSNR-Y (dB) ↑ | SSIM-Y ↑ |")
    assert "NIQE" not in lines[0] and "LPIPS" not in lines[0]
    assert lines[2].startswith("| TGSR | 27.13 | 0.8312 |")  # TGSR first, then the others
    assert "| ground truth | — |" in table
    assert f"- NIQE: {NIQE_REASON}" in table
    assert f"- LPIPS: {LPIPS_REASON}" in table


def test_print_headline():
    console = Console(record=True, width=250)
    print_headline(_results(), console=console)
    text = console.export_text()
    assert "TGSR" in text and "27.13" in text and "NIQE: n/a (images smaller" in text


def test_write_report(tmp_path):
    out = tmp_path / "report"
    grid = figures.comparison_grid(
        [{c: _img(0, 8 if c == "LR" else 64) for c in COLUMNS}],
        COLUMNS,
        out / "grid.png",
        captions=["a red circle with stripes"],
    )
    elsewhere = figures.training_curves({"loss": [(0, 1.0), (10, 0.5)]}, tmp_path / "curves.png")
    paths = write_report(
        out,
        _results(),
        {"comparison": grid, "training_curves": (elsewhere, "Losses.")},
        meta={"command": "tgsr quickstart --out report", "device": "cpu"},
    )
    assert json.loads(paths["json"].read_text()) == _results()
    html = paths["html"].read_text()
    assert html.count("<img ") == 2
    assert 'src="grid.png"' in html and 'src="figures/curves.png"' in html
    assert (out / "figures" / "curves.png").is_file()
    for text in ("27.13", "0.8312", "38.20", "TGSR", "ground truth", "Losses.", "tgsr quickstart"):
        assert text in html
    assert '<td class="na">n/a</td>' in html and '<td class="na">unavailable</td>' in html
    assert "images smaller than 96x96" in html and "FID needs at least 2 images" in html
    assert "&quot;compositional&quot;: 0.8" in html  # nested entries listed under Details
    md = paths["md"].read_text()
    assert "![comparison](grid.png)" in md and "| TGSR | 27.13 |" in md
    assert "tgsr quickstart --out report" in md


def test_results_json_is_plain_json(tmp_path):
    results = {"models": {"tgsr": {"psnr": torch.tensor(30.0), "x": np.float64(float("inf"))}}}
    paths = write_report(tmp_path, results, {}, {})
    assert json.loads(paths["json"].read_text()) == {"models": {"tgsr": {"psnr": 30.0, "x": "inf"}}}
    with pytest.raises(ValueError):
        write_report(tmp_path, {"tgsr": {}}, {}, {})


def test_comparison_grid_layout_and_determinism(tmp_path):
    rows = [
        {c: _img(i, 8 if c == "LR" else 64) for c in COLUMNS if c != "TGSR coarse"}
        for i in range(2)
    ]
    a = figures.comparison_grid(rows, COLUMNS, tmp_path / "a.png", captions=["one", "two"])
    b = figures.comparison_grid(rows, COLUMNS, tmp_path / "b.png", captions=["one", "two"])
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as im:
        assert im.width == 6 + 6 * (128 + 6) and im.height > 2 * 128
        lr_cell = np.asarray(im)[60 : 60 + 128, 6 : 6 + 128]
    assert lr_cell.shape == (128, 128, 3)


def test_edit_rows_attention_and_curves(tmp_path):
    lq = torch.rand(3, 8, 8)
    outs = [torch.rand(3, 64, 64) for _ in range(3)]
    p = figures.edit_rows(
        lq,
        ["a red square", "a blue square", "a green striped square"],
        outs,
        tmp_path / "edits.png",
    )
    with Image.open(p) as im:
        assert im.width == 6 + 4 * (128 + 6)
    words = ["a", "red", "square"]
    attn = torch.rand(18, 8, 8)
    q = figures.attention_figure(outs[0], words, attn, tmp_path / "attn.png")
    q2 = figures.attention_figure(outs[0], words, attn, tmp_path / "attn2.png")
    assert q.read_bytes() == q2.read_bytes() and q.stat().st_size > 5_000
    c = figures.training_curves(
        {
            "g_loss": [(i, 1 / (i + 1)) for i in range(50)],
            "psnr": [(i, 20 + i / 10) for i in range(50)],
        },
        tmp_path / "curves.png",
    )
    with Image.open(c) as im:
        assert im.width >= 600 and im.height >= 300
    with pytest.raises(ValueError):
        figures.edit_rows(lq, ["one"], outs, tmp_path / "bad.png")
