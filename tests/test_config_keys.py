"""Every config key does something: each one is read somewhere in ``src/tgsr`` besides
``config.py`` (its definition and validation do not count), and the keys removed as dead are
rejected in a user's file but tolerated in the saved config of an older run."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from tgsr.config import Config, ConfigError, config_to_dict, load_config

SRC = Path(__file__).resolve().parents[1] / "src" / "tgsr"


def _keys(obj, prefix: str = ""):
    """(dotted key, field name) of every leaf field of the config tree."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _keys(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.name


def _sources() -> str:
    return "\n".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "config.py")


def _is_read(name: str, sources: str) -> bool:
    """Accessed as an attribute (``cfg.train.lr``; ``self.channels`` after ``**asdict(section)``
    into a constructor whose arguments are the keys) or named in a string
    (``getattr(cfg, "l2")``)."""
    return re.search(rf"\.{name}\b|[\"']{name}[\"']", sources) is not None


def test_every_config_key_is_read_somewhere():
    sources = _sources()
    unread = [key for key, name in _keys(Config()) if not _is_read(name, sources)]
    assert not unread, f"config keys that nothing reads (implement or remove them): {unread}"


def test_the_check_tells_read_from_unread():
    sources = _sources()
    assert _is_read("max_words", sources) and _is_read("tar_topk", sources)
    assert not _is_read("num_eval_images", sources)  # the removed dead key


@pytest.mark.parametrize("section, key", [("damsm", "eval_path"), ("train", "num_eval_images")])
def test_removed_keys_rejected_in_a_users_file(tmp_path, section, key):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"extends": "quickstart", section: {key: 1}}))
    with pytest.raises(ConfigError, match=f"unknown config key '{section}.{key}'"):
        load_config(path)


def test_a_saved_config_of_an_older_run_still_loads(tmp_path):
    saved = {"format_version": 1, **config_to_dict(load_config("quickstart"))}
    saved["damsm"]["eval_path"] = None  # written by versions that had these keys
    saved["train"]["num_eval_images"] = 64
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    assert load_config(path) == load_config("quickstart")
