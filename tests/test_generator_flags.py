"""The generator additions used by the CPU quickstart (position codes, word standardisation +
adapter, multiplicative fusion; each a config key, off in the paper presets), the checks of
their combinations, and configs / generator folders written before the keys were renamed."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml

from tgsr.config import ConfigError, GeneratorConfig, config_to_dict, load_config
from tgsr.errors import ModelFormatError
from tgsr.models import PaperGenerator, ReleasedGenerator, build_generator
from tgsr.models.blocks import subpixel_channels
from tgsr.models.serialization import load_generator, save_generator


def quickstart_generator(seed: int = 0, **over) -> PaperGenerator:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(load_config("quickstart").generator, channels=8, **over)
    return build_generator(cfg, 16, 8)


def text(b: int = 2, t: int = 6, lengths=(6, 3), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, 16, t, generator=g)
    mask = torch.arange(t)[None] >= torch.tensor(lengths)[:, None]
    words = words.masked_fill(mask[:, None], 0.0)
    return words, torch.randn(b, 16, generator=g), mask


def test_subpixel_channels_encode_the_position_inside_each_lr_pixel():
    x = torch.zeros(1, 1, 16, 24)
    enc = subpixel_channels(x, 4)
    assert enc.shape == (1, 8, 16, 24)
    assert torch.allclose(enc[..., :, :4], enc[..., :, 4:8])  # periodic with the LR grid
    assert torch.allclose(enc[..., :4, :], enc[..., 4:8, :])
    assert not torch.allclose(enc[..., :, 0], enc[..., :, 1])  # distinct inside an LR pixel
    assert subpixel_channels(x, 1).shape[1] == 0


def test_quickstart_generator_shapes_and_padding_invariance():
    g = quickstart_generator().eval()
    lq = torch.rand(2, 3, 4, 4)
    words, sentence, mask = text()
    out = g(lq, words, sentence, mask)
    assert out.sr.shape == (2, 3, 32, 32) and len(out.attn) == 3
    noisy = words.clone()
    noisy[1, :, 3:] = torch.randn(16, 3)  # change only padded positions
    again = g(lq, noisy, sentence, mask)
    assert torch.allclose(out.sr, again.sr, atol=1e-6)


def test_changing_one_word_changes_the_output_and_the_sentence_does_not():
    g = quickstart_generator().eval()
    lq = torch.rand(2, 3, 4, 4)
    words, sentence, mask = text()
    base = g(lq, words, sentence, mask).sr
    other = words.clone()
    other[0, :, 1] = torch.randn(16)
    assert not torch.allclose(base[0], g(lq, other, sentence, mask).sr[0])
    assert torch.equal(base, g(lq, words, sentence + 1.0, mask).sr)  # no sentence input left


def test_empty_caption_output_ignores_every_word_and_sentence_value():
    """With no real word, whatever sits in the padded word slots and the sentence feature
    changes nothing: the TAMs attend to nothing (maps exactly 0)."""
    g = quickstart_generator().eval()
    lq = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    words, sentence, mask = text(lengths=(0, 0))
    assert torch.all(words == 0)
    out = g(lq, words, torch.zeros_like(sentence), mask)
    garbage = torch.randn(words.shape, generator=torch.Generator().manual_seed(4)) * 10
    again = g(lq, garbage, sentence * 5, mask)
    assert torch.equal(out.sr, again.sr)
    assert all(torch.all(a == 0) for a in out.attn + again.attn)
    other = g(lq.flip(-1), garbage, sentence, mask)  # the image still reaches the output
    assert not torch.allclose(other.sr, out.sr)


def test_word_statistics_are_learned_in_training_and_frozen_at_inference():
    g = quickstart_generator().train()
    words, sentence, mask = text()
    before = g.word_norm.norm.running_mean.clone()
    g(torch.rand(2, 3, 4, 4), words * 3 + 1, sentence, mask)
    assert not torch.equal(before, g.word_norm.norm.running_mean)
    g.eval()
    frozen = g.word_norm.norm.running_mean.clone()
    g(torch.rand(2, 3, 4, 4), words, sentence, mask)
    assert torch.equal(frozen, g.word_norm.norm.running_mean)


def test_the_saved_config_is_the_config_dataclass_as_it_is(tmp_path):
    g = quickstart_generator().eval()
    save_generator(g, tmp_path / "g")
    saved = json.loads((tmp_path / "g" / "config.json").read_text())["config"]
    assert saved == {"scale": 8, "word_dim": 16, **dataclasses.asdict(g.config)}
    h = load_generator(tmp_path / "g")
    assert type(h) is PaperGenerator and h.config == g.config
    assert h.config.position_code == "coords+subpixel" and h.config.word_norm
    lq = torch.rand(2, 3, 4, 4)
    words, sentence, mask = text()
    assert torch.equal(g(lq, words, sentence, mask).sr, h(lq, words, sentence, mask).sr)


def test_a_generator_folder_with_the_old_keys_loads(tmp_path):
    """A folder written before position_code (the keys tgsr wrote then) loads into the same
    generator; one with sentence_cond: true is refused with one line."""
    g = quickstart_generator().eval()
    save_generator(g, tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "config.json").read_text())
    old = {k: v for k, v in meta["config"].items() if k != "position_code"}
    old.update(coord_channels=True, subpixel_coords=True, sentence_cond=False)
    (tmp_path / "g" / "config.json").write_text(json.dumps({**meta, "config": old}))
    h = load_generator(tmp_path / "g")
    assert h.config == g.config
    old["sentence_cond"] = True
    (tmp_path / "g" / "config.json").write_text(json.dumps({**meta, "config": old}))
    with pytest.raises(ModelFormatError, match="sentence_cond was removed") as err:
        load_generator(tmp_path / "g")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "coord, subpixel, code",
    [(False, False, "none"), (True, False, "coords"), (False, True, "subpixel"),
     (True, True, "coords+subpixel")],
)  # fmt: skip
def test_old_position_keys_map_to_position_code(coord, subpixel, code):
    cfg = load_config("ablations/tgsr", [f"generator.coord_channels={str(coord).lower()}",
                                         f"generator.subpixel_coords={str(subpixel).lower()}",
                                         "generator.sentence_cond=false"])  # fmt: skip
    assert cfg.generator.position_code == code


def test_a_saved_run_config_with_the_old_keys_loads(tmp_path):
    saved = {"format_version": 1, **config_to_dict(load_config("quickstart"))}
    del saved["generator"]["position_code"]
    saved["generator"].update(coord_channels=True, subpixel_coords=True, sentence_cond=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert load_config(tmp_path / "config.yaml") == load_config("quickstart")


def test_an_old_no_text_record_reads_its_no_op_text_keys_as_off(tmp_path):
    """Before validate() refused them, a no-text generator accepted word_norm / word_adapter /
    text_fusion and built nothing for them (the old quickstart baseline saved word_norm: true):
    such a record, recognised by its old keys, loads; a current one is still refused."""
    torch.manual_seed(0)
    g = build_generator(GeneratorConfig(channels=8, use_text=False), 16, 4).eval()
    save_generator(g, tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "config.json").read_text())
    old = {k: v for k, v in meta["config"].items() if k != "position_code"}
    old.update(coord_channels=False, subpixel_coords=False, sentence_cond=False,
               word_norm=True, word_adapter="mlp", text_fusion="concat_mul")  # fmt: skip
    (tmp_path / "g" / "config.json").write_text(json.dumps({**meta, "config": old}))
    assert load_generator(tmp_path / "g").config == g.config
    del old["coord_channels"], old["subpixel_coords"], old["sentence_cond"]
    (tmp_path / "g" / "config.json").write_text(json.dumps({**meta, "config": old}))
    with pytest.raises(ModelFormatError, match="needs text but generator.use_text=false"):
        load_generator(tmp_path / "g")


def test_an_old_key_overrides_its_part_of_the_preset_position_code():
    cfg = load_config("quickstart", ["generator.subpixel_coords=false"])
    assert cfg.generator.position_code == "coords"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["generator.sentence_cond=true"], "generator.sentence_cond was removed"),
        (["generator.use_text=false", "loss.tar=0"],
         "generator.word_norm, generator.word_adapter, generator.text_fusion, "
         "generator.tam_coords needs text"),
        (["generator.arch=released"], "generator.text_fusion must be 'concat'"),
        (["generator.arch=released", "generator.text_fusion=concat"],
         "'subpixel' is implemented for arch='paper'"),
        (["generator.arch=released", "generator.text_fusion=concat",
          "generator.position_code=coords"], "generator.activation does nothing"),
        (["generator.arch=released", "generator.text_fusion=concat",
          "generator.position_code=coords", "generator.activation=relu",
          "generator.tam_coords=true"], "generator.tam_coords is implemented for arch='paper'"),
        (["generator.coarse_to_fine=false", "generator.refine_input=highpass", "loss.tar=0",
          "loss.fine_l2=0"], "generator.refine_input feeds the refine branch"),
        (["generator.position_code=left"], "generator.position_code: must be one of"),
    ],
)  # fmt: skip
def test_combinations_that_would_do_nothing_are_config_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("quickstart", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_constructors_check_their_config_and_build_picks_the_class():
    with pytest.raises(ConfigError, match="needs text"):
        PaperGenerator(GeneratorConfig(use_text=False, word_norm=True), 4, 8)
    with pytest.raises(ValueError, match="build_generator picks the class"):
        PaperGenerator(GeneratorConfig(arch="released"), 4, 8)
    assert type(build_generator(GeneratorConfig(arch="released"), 8, 4)) is ReleasedGenerator
    assert type(build_generator(load_config("quickstart"), 8)) is PaperGenerator
    with pytest.raises(ValueError, match="give the scale"):
        build_generator(GeneratorConfig(), 8)


def test_additions_that_are_off_are_not_built():
    g = build_generator(GeneratorConfig(channels=8), 16, 4)
    assert g.word_norm is None and g.word_adapter is None
    assert all(s.pos is None for s in g.stages) and g.head[0].in_channels == 3
    assert g.stages[0].fuse[0].in_channels == 2 * 8  # concat(F_im, F_attn)
    assert g.stages[0].tam.project.out_channels == 8  # no coordinates in the TAM query
    q = quickstart_generator()
    assert q.head[0].in_channels == 5 and q.stages[0].fuse[0].in_channels == 3 * 8
    assert q.word_norm is not None and q.word_adapter is not None


def test_paper_preset_keeps_the_additions_off():
    cfg = load_config("ablations/tgsr").generator
    assert cfg.position_code == "none" and not cfg.word_norm
    assert cfg.word_adapter == "none" and cfg.text_fusion == "concat"
