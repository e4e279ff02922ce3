"""`tgsr damsm train` + `tgsr train --config <preset> --set train.max_steps=2` for every shipped
preset, on CPU, on a tiny fixture of the preset's data-set layout (networks shrunk with --set so
the whole sweep takes seconds; the preset's structure - data format, generator layout, loss
terms - is what is exercised)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from datafixtures import make
from tgsr.cli.app import app
from tgsr.config import load_config, preset_names
from tgsr.models.serialization import load_generator

SHRINK = [
    "data.hr_size=32", "data.num_workers=0", "data.load_ratio=1.0",
    "damsm.text_encoder.embedding_dim=8", "damsm.text_encoder.hidden_dim=8",
    "damsm.image_encoder.kind=light", "damsm.image_encoder.feature_dim=16",
    "damsm.image_encoder.light_channels=4", "damsm.image_encoder.light_input_size=32",
    "damsm_train.batch_size=2", "damsm_train.max_steps=1", "damsm_train.mixed_precision=no",
    "generator.channels=8", "discriminator.channels=4",
    "train.batch_size=2", "train.mixed_precision=no", "train.channels_last=false",
    "train.max_steps=2",
]  # fmt: skip
FIXTURE = {"cub": "cub", "oxford102": "oxford102", "coco": "coco", "celeba_hq": "celeba_hq",
           "celeba_attr": "celeba_attr"}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("preset", preset_names())
def test_preset_trains_two_steps(preset, tmp_path):
    cfg = load_config(preset)
    sets = list(SHRINK)  # hr 32: x16 trains from 2x2 inputs, enough to run every stage
    if cfg.data.format != "synthetic":
        root, _ = make(FIXTURE[cfg.data.format], tmp_path)
        sets.append(f"data.root={root}")
    runner = CliRunner()
    args = [a for s in sets for a in ("--set", s)]
    damsm = tmp_path / "damsm"
    res = runner.invoke(
        app, ["damsm", "train", "--config", preset, "--out", str(damsm), "--cpu", *args]
    )
    assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "--config", preset, "--out", str(run), "--cpu", *args,
                              "--set", f"damsm.path={damsm}"])  # fmt: skip
    assert res.exit_code == 0, res.output
    g = load_generator(run / "generator")
    assert g.use_text == cfg.generator.use_text
    assert load_config(run / "config.yaml").train.max_steps == 2


def test_too_small_data_set_is_a_clear_error(tmp_path):
    root, _ = make("folder", tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["damsm", "train", "--config", "cub_x4", "--out", str(tmp_path / "d"),
                              "--set", "data.format=folder", "--set", f"data.root={root}",
                              "--set", "damsm_train.batch_size=64", "--set", "data.hr_size=32",
                              "--set", "damsm.image_encoder.kind=light", "--cpu"])  # fmt: skip
    assert res.exit_code != 0
    assert "fewer than damsm_train.batch_size=64" in str(res.exception)
