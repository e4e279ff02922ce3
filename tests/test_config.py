"""Strict config loading: presets, extends, --set overrides, clear one-line errors."""

from __future__ import annotations

import pytest

from tgsr.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    preset_names,
    save_config,
)


def test_every_preset_loads_and_validates():
    names = preset_names()
    assert "quickstart" in names and "ablations/tgsr" in names and "cub_x8" in names
    for name in names:
        cfg = load_config(name)
        assert cfg.data.hr_size % cfg.data.scale == 0


def test_scale_presets_match_their_names():
    for ds in ("cub", "oxford102", "coco", "celeba"):
        for s in (4, 8, 16):
            assert load_config(f"{ds}_x{s}").data.scale == s


def test_set_overrides_parse_yaml_values():
    cfg = load_config(
        "quickstart", ["train.lr=3e-4", "train.betas=[0.5, 0.9]", "data.synthetic.seed=7"]
    )
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.betas == (0.5, 0.9)
    assert cfg.data.synthetic.seed == 7


@pytest.mark.parametrize(
    "override, message",
    [
        (["train.lrr=1"], "unknown config key 'train.lrr'"),
        (["train.batch_size=many"], "train.batch_size: expected an integer"),
        (["train.batch_size=2.5"], "train.batch_size: expected an integer"),
        (["generator.activation=gelu"], "generator.activation: must be one of"),
        (["generator.use_text=yes please"], "generator.use_text: expected true/false"),
        (["data.scale=3"], "data.scale must be 2, 4, 8 or 16"),
        (["data.hr_size=72"], "must be a multiple of 16"),
        (["generator.use_text=false"], "needs text"),
        (["generator.coarse_to_fine=false"], "loss.tar weights the fine output"),
        (["loss.tar=0", "loss.fine_l2=0"], "the refine branch gets no pixel loss"),
        (["loss.l2=-1"], "loss.l2 must be >= 0"),
        (["train"], "--set expects key=value"),
    ],
)
def test_bad_configs_fail_with_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("quickstart", override)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_duplicate_keys_are_rejected(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("train:\n  lr: 1.0e-3\n  lr: 2.0e-3\n")
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        load_config(p)


def test_extends_is_relative_and_later_files_win(tmp_path):
    (tmp_path / "parent.yaml").write_text("extends: quickstart\ntrain: {batch_size: 4, lr: 0.5}\n")
    (tmp_path / "child.yaml").write_text("extends: parent.yaml\ntrain: {batch_size: 8}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.train.batch_size == 8 and cfg.train.lr == 0.5
    assert cfg.data.format == "synthetic"  # from the quickstart preset at the root


def test_extends_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="too deep"):
        load_config(tmp_path / "a.yaml")


def test_missing_config_names_the_presets():
    with pytest.raises(ConfigError, match="quickstart"):
        load_config("no_such_preset")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("cub_x16", ["train.lr=2e-4"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_yaml11_words_stay_words_for_choices_and_work_for_booleans():
    cfg = load_config("quickstart", ["train.mixed_precision=no", "generator.coord_channels=no",
                                     "train.channels_last=off"])  # fmt: skip
    assert cfg.train.mixed_precision == "no"
    assert cfg.generator.position_code == "subpixel" and cfg.train.channels_last is False
