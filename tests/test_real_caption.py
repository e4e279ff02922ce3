"""Issue 14 pieces: the LR colour drop (``data.lq_colour_drop``), the caption-response planning and
measurement (``tgsr.evaluation.caption_response.plan_edits`` / ``measure``) and the
``benchmarks/real_caption.py`` benchmark end to end on a tiny CUB-layout fixture."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers_pipeline import natural_image
from test_real_data import make_tiny_cub
from tgsr.config import ConfigError, load_config
from tgsr.data.degradations import desaturate, imresize
from tgsr.data.loader import build_dataset, build_vocabulary
from tgsr.evaluation.caption_response import measure, plan_edits
from tgsr.evaluation.common import SROutput, encode_captions

REPO = Path(__file__).resolve().parents[1]


def _luma(img: torch.Tensor) -> torch.Tensor:
    return 0.299 * img[..., 0, :, :] + 0.587 * img[..., 1, :, :] + 0.114 * img[..., 2, :, :]


def _chroma(img: torch.Tensor) -> torch.Tensor:
    return (img - _luma(img).unsqueeze(-3)).abs().mean()


# ----------------------------------------------------------------------------- colour drop


def test_desaturate_keeps_luma_and_scales_chroma():
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(desaturate(img, 1.0), img)
    grey = desaturate(img, 0.0)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    assert torch.allclose(_luma(grey), _luma(img), atol=1e-6)
    half = desaturate(img, 0.5)
    assert torch.allclose(_chroma(half), 0.5 * _chroma(img), rtol=1e-5)


def test_colour_drop_config_is_checked():
    with pytest.raises(ConfigError, match="lq_colour_drop"):
        load_config("cub_x8", ["data.lq_colour_drop=1.5"])
    with pytest.raises(ConfigError, match="ShapeCaps"):
        load_config("quickstart", ["data.lq_colour_drop=0.5"])


def _cub_cfg(root: Path, drop: float):
    return load_config("cub_x8", [f"data.root={root}", "data.hr_size=32", "data.cache=false",
                                  f"data.lq_colour_drop={drop}"])  # fmt: skip


def test_colour_drop_greys_training_inputs_only(tmp_path):
    make_tiny_cub(tmp_path)
    plain, drop = _cub_cfg(tmp_path, 0.0), _cub_cfg(tmp_path, 1.0)
    vocab = build_vocabulary(plain.data)
    samples = {}
    for name, cfg in (("plain", plain), ("drop", drop)):
        ds = build_dataset(cfg.data, vocab, train=True)
        samples[name] = []
        for i in range(len(ds)):
            torch.manual_seed(3 + i)
            samples[name].append(ds[i])
    for a, b in zip(samples["plain"], samples["drop"], strict=True):
        assert torch.equal(a["gt"], b["gt"])  # the crop / flip / caption draws come first
        assert a["caption"] == b["caption"]
        assert _chroma(b["lq"]) < _chroma(a["lq"])  # p = 1: every LR input loses colour
        assert torch.allclose(_luma(b["lq"]), _luma(a["lq"]), atol=2 / 255)  # 8-bit rounding
    # evaluation never drops colour
    ev_plain = build_dataset(plain.data, vocab, train=False)[0]
    ev_drop = build_dataset(drop.data, vocab, train=False)[0]
    assert torch.equal(ev_plain["lq"], ev_drop["lq"])


# ----------------------------------------------------------------------------- edits


def test_plan_edits_counts_what_it_leaves_out():
    caps = [
        "a red bird with a short beak",  # red -> blue
        "a small bird with a short beak",  # no colour
        ["a black bird", "a bird that is mostly white"],  # black -> yellow, white -> red
        "one two three four five six black",  # the colour word is word 7
    ]
    edits, skipped = plan_edits(caps, known={"blue", "yellow"}, max_words=6)
    assert [(e.index, e.old, e.new) for e in edits] == [(0, "red", "blue"), (2, "black", "yellow")]
    assert edits[0].edited == "a blue bird with a short beak"
    assert skipped == {"no_colour": 1, "unknown_new_colour": 1, "beyond_max_words": 1}
    # one edit per new colour (never the old one), the same counting
    every, skipped = plan_edits(caps, known={"blue", "yellow", "red"}, max_words=6,
                                to=["red", "blue", "yellow", "green"])  # fmt: skip
    assert [(e.index, e.old, e.new) for e in every] == [
        (0, "red", "blue"), (0, "red", "yellow"), (2, "black", "red"), (2, "black", "blue"),
        (2, "black", "yellow"), (2, "white", "red"), (2, "white", "blue"), (2, "white", "yellow"),
    ]  # fmt: skip
    assert every[3].edited == "a blue bird"
    assert skipped == {"no_colour": 1, "unknown_new_colour": 4, "beyond_max_words": 3}


class _ToyVocab:
    """Word ids for a few words (1 = unknown), like tgsr.text.Vocabulary.encode."""

    words = ["<pad>", "<unk>", "a", "bird", "black", "yellow", "red", "blue"]
    index = {w: i for i, w in enumerate(words)}

    def encode(self, caption, max_words, rng=None):
        from tgsr.text.vocab import EncodedCaption

        ids = [self.index.get(w, 1) for w in caption.lower().split()][:max_words]
        return EncodedCaption(ids=ids + [0] * (max_words - len(ids)), length=len(ids), unknown=[])


class _YellowWhenSaid:
    """Bicubic x4, plus a yellow tint in the top-left quarter when the caption says yellow."""

    uses_text = True

    def __call__(self, lq, tokens, lengths):
        sr = imresize(lq, 4, method="bicubic").clamp(0, 1)
        said = (tokens == _ToyVocab.index["yellow"]).any(dim=1)
        tint = torch.zeros_like(sr)
        tint[:, 0, :16, :16], tint[:, 1, :16, :16], tint[:, 2, :16, :16] = 0.05, 0.05, -0.05
        return SROutput((sr + said[:, None, None, None] * tint).clamp(0, 1))


class _IgnoresText(_YellowWhenSaid):
    def __call__(self, lq, tokens, lengths):
        return super().__call__(lq, torch.zeros_like(tokens), lengths)


def test_measure_sees_a_colour_response_and_its_direction():
    lq = torch.full((3, 3, 8, 8), 0.3)
    lq[:, 2] = 0.5  # bluish grey, so yellow is a real change
    edits, _ = plan_edits(["a black bird", "a black bird", "a red bird"], known={"yellow", "blue"})
    vocab = _ToyVocab()

    def encode(caps):
        return encode_captions(vocab, caps, 6)

    res = measure(_YellowWhenSaid(), lq, edits, encode, scale=4)
    assert res["num_edits"] == 3
    pairs = res["per_pair"]
    assert set(pairs) == {"black->yellow", "red->blue"}
    # 0.05 of 255 on R, G and B = 12.75 levels in the most-changed pixels, toward yellow
    assert pairs["black->yellow"]["mean_change"] == pytest.approx(12.75, abs=0.6)
    assert pairs["black->yellow"]["toward_fraction"] == 1.0
    assert pairs["red->blue"]["mean_change"] == 0.0  # the toy model knows no blue
    assert res["lr_psnr_edited"] < res["lr_psnr_original"]  # the tint is not in the LR image
    flat = measure(_IgnoresText(), lq, edits, encode, scale=4)
    assert flat["mean_change"] == 0.0 and flat["toward_fraction"] == 0.0
    assert flat["lr_psnr_edited"] == flat["lr_psnr_original"]


# ----------------------------------------------------------------------------- benchmark


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "real_caption", REPO / "benchmarks" / "real_caption.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_real_caption_benchmark_end_to_end(tmp_path):
    from tgsr.pipeline import TGSRPipeline

    data = tmp_path / "cub"
    make_tiny_cub(data)
    out = tmp_path / "out"
    bench = _load_benchmark()
    photo = tmp_path / "photos" / "pkg" / "bird.png"  # a freely licensed photograph's stand-in
    photo.parent.mkdir(parents=True)
    Image.fromarray(natural_image(60, 80)).save(photo)
    manifest = tmp_path / "showcase.json"
    manifest.write_text(json.dumps({"photos": [{
        "name": "bird", "package": "pkg", "file": "bird.png", "hr_size": 32, "licence": "CC0",
        "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(), "edits": ["red", "blue"],
        "caption": "a small grey bird with short wings"}]}))  # fmt: skip
    report = bench.main(["--data", str(data), "--out", str(out), "--minutes", "0.2",
                         "--hr-size", "32", "--unseen-captions", "2", "--batch-size", "4",
                         "--curve-every", "2", "--lr-guard", "45",
                         "--set", "data.cache=false", "--showcase", str(tmp_path / "photos"),
                         "--showcase-manifest", str(manifest)])  # fmt: skip
    saved = json.loads((out / "results.json").read_text())
    assert saved["recipe"] == "recolour_w16" and saved["scale"] == 8  # the default recipe
    assert saved["tam_coords"] is False
    assert "data.recolour_loss_weight=16" in saved["recipe_overrides"]
    assert {"bicubic", "tgsr", "tgsr_guard45", "baseline"} <= set(saved["evaluation"])
    cr = saved["caption_response"]
    # the LR guard holds every output, unedited and edited, within 45 dB of its input
    guarded = cr["caption0"]["tgsr_guard45"]
    assert guarded["lr_psnr_original"] >= 45 and guarded["lr_psnr_edited"] >= 45
    assert saved["evaluation"]["tgsr_guard45"]["lr_psnr"] >= 45
    assert saved["acceptance_guarded"]["lr_psnr_edited"]["met"]
    # the two test birds are grey: grey -> red on caption 0, and on captions 1..2
    assert cr["caption0"]["num_edits"] == 2 and cr["unseen_captions"]["num_edits"] == 4
    assert cr["caption0"]["baseline"]["mean_change"] == 0.0  # no text, no response
    every = cr["every_new_colour"]["tgsr"]["per_pair"]  # grey -> each known colour
    assert "grey->red" in every and all(k.startswith("grey->") for k in every)
    assert "grey->red" in cr["caption0"]["tgsr"]["per_pair"]
    assert cr["curve"] and cr["curve"][0]["step"] == 2
    assert len((out / "curve.jsonl").read_text().splitlines()) == len(cr["curve"])
    assert set(report["acceptance"]) == {"caption_response_levels", "toward_fraction",
                                         "lr_psnr_edited", "psnr_minus_baseline"}  # fmt: skip
    assert (out / "figures" / "edits.png").is_file()
    # the committable pictures: the exported (guarded) model and the baseline on the photograph
    bird = saved["showcase"]["photos"]["bird"]
    assert set(bird["metrics"]) == {"bicubic", "tgsr", "baseline"}
    assert bird["metrics"]["tgsr"]["lr_psnr"] >= 45  # through the exported model's guard
    assert [e["new"] for e in bird["edits"]] == ["red", "blue"]
    assert all(Path(f).is_file() for f in saved["showcase"]["figures"])
    pipe = TGSRPipeline.from_pretrained(out / "model")
    assert pipe.info.lr_guard == 45.0  # the exported model carries the guard it was scored with
    img = pipe(torch.rand(1, 3, 4, 4), "a small red bird", output_type="pt").images
    assert img.shape[-2:] == (32, 32)
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{bench.BEGIN}\nold\n{bench.END}\nafter\n")
    bench.main(["--from-json", str(out / "results.json"), "--doc", str(doc)])
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| caption0 | tgsr | 2 |" in text and "caption_response_levels" in text
    rescored = bench.main(["--rescore", str(out), "--out", str(tmp_path / "rs"),
                           "--unseen-captions", "0", "--lr-guard", "40", "45"])  # fmt: skip
    assert set(rescored["runs"]) == {"out/tgsr", "out/tgsr+guard40", "out/tgsr+guard45",
                                     "out/baseline"}  # fmt: skip
    assert rescored["runs"]["out/tgsr+guard45"]["caption0"]["mean_change"] == pytest.approx(
        guarded["mean_change"], abs=1e-6
    )
    tgsr_row = rescored["runs"]["out/tgsr"]
    assert tgsr_row["caption0"]["mean_change"] == pytest.approx(
        cr["caption0"]["tgsr"]["mean_change"], abs=1e-6
    )


def test_a_training_run_is_guarded_at_40_db_unless_told_otherwise():
    bench = _load_benchmark()
    assert bench.training_guard(bench.parse_args([])) == 40.0
    assert bench.training_guard(bench.parse_args(["--lr-guard", "38.5"])) == 38.5
    assert bench.training_guard(bench.parse_args(["--lr-guard", "0"])) is None  # off
    for bad in (["-1"], ["nan"], ["40", "45"]):
        with pytest.raises(SystemExit, match="--lr-guard"):
            bench.training_guard(bench.parse_args(["--lr-guard", *bad]))


def test_the_real_runs_use_the_quickstart_network_without_tam_coordinates(tmp_path):
    from tgsr.config import load_config

    data = tmp_path / "cub"
    make_tiny_cub(data)
    bench = _load_benchmark()
    cfgs = bench.configs(bench.parse_args(["--data", str(data)]))
    assert load_config("quickstart").generator.tam_coords  # the preset has them ...
    assert not cfgs["tgsr"].generator.tam_coords  # ... the real-bird TGSR run does not
    assert cfgs["tgsr"].generator.use_text and not cfgs["baseline"].generator.use_text
    on = bench.configs(
        bench.parse_args(["--data", str(data), "--set", "generator.tam_coords=true"])
    )
    assert on["tgsr"].generator.tam_coords  # --set wins over the benchmark's network


def test_a_missing_showcase_photograph_stops_the_run_before_training(tmp_path):
    data = tmp_path / "cub"
    make_tiny_cub(data)
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="--fetch"):
        _load_benchmark().main(["--data", str(data), "--out", str(out),
                                "--showcase", str(tmp_path / "no_photos")])  # fmt: skip
    assert not (out / "damsm").exists()  # nothing trained


def test_environment_names_the_machine_and_versions():
    from tgsr.device import environment

    env = environment("cpu")
    assert env["device"]["device"] == "cpu" and "gpu" not in env["device"]
    assert env["device"]["cpu_count"] >= 1 and env["device"]["cpu_capability"]
    assert env["versions"]["torch"] == torch.__version__


def test_target_response_scores_the_recolouring_targets(tmp_path):
    data = tmp_path / "cub"
    make_tiny_cub(data)
    report = _load_benchmark().main(["--targets", "--data", str(data), "--out", str(tmp_path / "t"),
                                     "--hr-size", "32", "--set", "data.cache=false"])  # fmt: skip
    assert json.loads((tmp_path / "t" / "targets.json").read_text()) == report
    rows = {(r["recolour_lr_psnr"], r["recolour_max_cover"]): r for r in report["rows"]}
    assert len(rows) == 12 and report["num_edits"] == 2  # the two grey test birds: grey -> red
    for (db, _), r in rows.items():
        assert r["lr_psnr"] >= db - 1.0  # each target keeps its LR budget (8-bit rounding aside)
        assert r["toward_fraction"] == 1.0
    # a looser budget moves further; so does a smaller cover at the same budget
    assert rows[(36.0, 0.15)]["mean_change"] > rows[(40.0, 0.15)]["mean_change"] > 0
    assert rows[(40.0, 0.1)]["mean_change"] >= rows[(40.0, 1.0)]["mean_change"]
