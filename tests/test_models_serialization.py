import dataclasses
import json

import pytest
import torch

from tgsr.config import DAMSMConfig, GeneratorConfig, ImageEncoderConfig, TextEncoderConfig
from tgsr.errors import ModelFormatError
from tgsr.models import (
    LightImageEncoder,
    TextEncoder,
    build_generator,
    load_component,
    load_damsm,
    load_generator,
    load_image_encoder,
    load_text_encoder,
    save_component,
    save_damsm,
    save_generator,
    save_image_encoder,
    save_text_encoder,
)
from tgsr.models.serialization import generator_config_dict
from tgsr.text import Vocabulary

VOCAB = Vocabulary.build(["a red square on the left", "a blue circle on the right"])
LIGHT = ImageEncoderConfig(kind="light", feature_dim=8, light_channels=4, light_input_size=32)


def _generator(**kw):
    return build_generator(GeneratorConfig(**kw), 8, 4)


def _text_inputs():
    tokens = torch.tensor([[2, 3, 4, 0], [2, 5, 0, 0]])
    return tokens, torch.tensor([3, 2])


@pytest.mark.parametrize("arch", ["paper", "released"])
def test_generator_round_trip(tmp_path, arch):
    torch.manual_seed(0)
    gen = build_generator(GeneratorConfig(arch=arch, channels=8, position_code="coords"), 8, 4)
    gen = gen.eval()
    lq, words = torch.rand(2, 3, 8, 8), torch.randn(2, 8, 4)
    mask = torch.tensor([[False, False, False, True], [False, False, True, True]])
    save_generator(gen, tmp_path / "g", extra={"note": "x"})
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    meta = json.loads((tmp_path / "g" / "config.json").read_text())
    assert meta["format_version"] == 1 and meta["kind"] == "generator" and meta["note"] == "x"
    loaded = load_generator(tmp_path / "g")
    assert torch.equal(loaded(lq, words, None, mask).sr, gen(lq, words, None, mask).sr)


def test_text_encoder_and_damsm_round_trip(tmp_path):
    torch.manual_seed(0)
    text = TextEncoder(TextEncoderConfig(embedding_dim=6, hidden_dim=4), len(VOCAB)).eval()
    image = LightImageEncoder(LIGHT).eval()
    tokens, lengths = _text_inputs()
    save_text_encoder(text, tmp_path / "t", VOCAB)
    loaded, vocab = load_text_encoder(tmp_path / "t")
    assert vocab == VOCAB
    for a, b in zip(loaded(tokens, lengths), text(tokens, lengths), strict=True):
        assert torch.equal(a, b)
    cfg = DAMSMConfig(
        image_encoder=ImageEncoderConfig(
            kind="light", feature_dim=8, light_channels=4, light_input_size=32
        )
    )
    save_damsm(text, image, tmp_path / "d", VOCAB, cfg)
    damsm, vocab = load_damsm(tmp_path / "d")
    assert vocab == VOCAB and damsm.gamma1 == cfg.gamma1
    img = torch.rand(2, 3, 32, 32)
    assert torch.equal(damsm.image_encoder(img)[0], image(img)[0])
    assert torch.equal(damsm.loss(img, tokens, lengths)[0], damsm.loss(img, tokens, lengths)[0])


def test_encoder_configs_saved_as_they_are_and_old_layout_loads(tmp_path):
    torch.manual_seed(0)
    tcfg = TextEncoderConfig(embedding_dim=6, hidden_dim=4, dropout=0.25)
    text = TextEncoder(tcfg, len(VOCAB)).eval()
    save_text_encoder(text, tmp_path / "t")
    meta = json.loads((tmp_path / "t" / "config.json").read_text())
    assert meta["config"] == {"vocab_size": len(VOCAB), **dataclasses.asdict(tcfg)}
    loaded, _ = load_text_encoder(tmp_path / "t")
    assert loaded.config == tcfg and loaded.vocab_size == len(VOCAB)
    # the layout the hand-built dict of earlier versions wrote, key for key
    old = {"vocab_size": len(VOCAB), "embedding_dim": 6, "hidden_dim": 4, "dropout": 0.25}
    (tmp_path / "t" / "config.json").write_text(json.dumps({**meta, "config": old}))
    tokens, lengths = _text_inputs()
    assert torch.equal(
        load_text_encoder(tmp_path / "t")[0](tokens, lengths)[1], text(tokens, lengths)[1]
    )
    save_image_encoder(LightImageEncoder(LIGHT), tmp_path / "i")
    meta = json.loads((tmp_path / "i" / "config.json").read_text())
    assert meta["config"] == dataclasses.asdict(LIGHT)
    assert load_image_encoder(tmp_path / "i").config == LIGHT


def test_format_errors(tmp_path):
    torch.manual_seed(0)
    gen = _generator(channels=8)
    save_generator(gen, tmp_path / "g")
    with pytest.raises(ModelFormatError, match="not found"):
        load_generator(tmp_path / "missing")
    with pytest.raises(ModelFormatError, match="holds a 'generator', expected a 'text_encoder'"):
        load_text_encoder(tmp_path / "g")
    # wrong architecture: same kind, other widths -> shape mismatch names the keys
    config = generator_config_dict(gen)
    save_component(_generator(channels=4), tmp_path / "g4", "generator", config)
    with pytest.raises(ModelFormatError, match=r"shape mismatch: head\.0\.weight"):
        load_generator(tmp_path / "g4")
    save_component(_generator(channels=8, use_text=False), tmp_path / "nt", "generator", config)
    with pytest.raises(ModelFormatError, match=r"missing keys: stages\.0\.tam"):
        load_generator(tmp_path / "nt")
    # unsupported version, unknown config key, corrupt weights, missing files
    meta = json.loads((tmp_path / "g" / "config.json").read_text())
    (tmp_path / "g" / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelFormatError, match="unsupported format_version 99"):
        load_generator(tmp_path / "g")
    (tmp_path / "g" / "config.json").write_text(
        json.dumps({**meta, "config": {**meta["config"], "width": 3}})
    )
    with pytest.raises(ModelFormatError, match="unknown config key 'generator.width'"):
        load_generator(tmp_path / "g")
    (tmp_path / "g" / "config.json").write_text(json.dumps(meta))
    (tmp_path / "g" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFormatError, match="corrupt or not a safetensors file"):
        load_component(tmp_path / "g", "generator")
    (tmp_path / "g" / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="missing model.safetensors"):
        load_generator(tmp_path / "g")
    (tmp_path / "g" / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        load_generator(tmp_path / "g")


def test_damsm_folder_needs_vocab(tmp_path):
    torch.manual_seed(0)
    text = TextEncoder(TextEncoderConfig(6, 4), len(VOCAB))
    cfg = DAMSMConfig(
        image_encoder=ImageEncoderConfig(kind="light", feature_dim=8, light_channels=4)
    )
    save_damsm(text, LightImageEncoder(cfg.image_encoder), tmp_path / "d", VOCAB, cfg)
    (tmp_path / "d" / "vocab.json").unlink()
    with pytest.raises(ModelFormatError, match="missing vocab.json"):
        load_damsm(tmp_path / "d")


def test_no_temp_files_left(tmp_path):
    save_generator(_generator(channels=4), tmp_path / "g")
    assert not [p for p in (tmp_path / "g").iterdir() if p.name.startswith(".")]
