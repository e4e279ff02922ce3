"""Every ablation preset (paper Table 2) builds, runs one G and one D step, and holds exactly the
modules and loss terms it should."""

import pytest
import torch

from tgsr.config import ConfigError, load_config, preset_names
from tgsr.data.degradations import build_pyramids, degrade
from tgsr.losses import LossSuite
from tgsr.models import TextAttention, TextEncoder, build_generator, build_image_encoder
from tgsr.models.discriminator import Discriminator

EXPECTED = {  # name: (use_text, refine branch, loss terms)
    "baseline": (False, False, {"l2"}),
    "tam": (True, False, {"l2", "cgan"}),
    "tic": (True, False, {"l2", "cgan", "tic"}),
    "coarse_to_fine": (True, True, {"l2", "fine_l2", "cgan", "tic"}),
    "tgsr": (True, True, {"l2", "tar", "cgan", "tic"}),
}
ABLATIONS = [n for n in preset_names() if n.startswith("ablations/")]
TINY = [
    "data.hr_size=32", "generator.channels=8", "discriminator.channels=4",
    "damsm.text_encoder.embedding_dim=8", "damsm.text_encoder.hidden_dim=8",
    "damsm.image_encoder.kind=light", "damsm.image_encoder.feature_dim=16",
    "damsm.image_encoder.light_channels=4", "damsm.image_encoder.light_input_size=32",
]  # fmt: skip


def test_every_table2_row_is_shipped():
    assert sorted(n.split("/")[1] for n in ABLATIONS) == sorted(EXPECTED)


def test_paper_weights_in_full_model():
    loss = load_config("ablations/tgsr").loss
    assert (loss.l2, loss.cgan, loss.tic, loss.tar, loss.tar_mode) == (1.0, 0.1, 0.5, 1.0, "top5")


@pytest.mark.parametrize("name", ABLATIONS)
def test_preset_builds_and_steps(name):
    use_text, refine, terms = EXPECTED[name.split("/")[1]]
    cfg = load_config(name, TINY)
    torch.manual_seed(0)
    scale, word_dim = cfg.data.scale, 2 * cfg.damsm.text_encoder.hidden_dim
    gen = build_generator(cfg.generator, word_dim, scale)
    suite = LossSuite(cfg.loss, cfg.generator, cfg.damsm, cfg.data.degradation)
    assert set(suite.terms) == terms
    n_tam = sum(isinstance(m, TextAttention) for m in gen.modules())
    assert n_tam == (gen.num_stages if use_text else 0)
    assert hasattr(gen, "refine_stages") == refine
    text_enc = TextEncoder(cfg.damsm.text_encoder, 20).eval()
    image_enc = disc = None
    if suite.uses_image_encoder:
        image_enc = build_image_encoder(cfg.damsm.image_encoder).eval().requires_grad_(False)
    if suite.uses_discriminator:
        disc = Discriminator(cfg.discriminator, cfg.data.hr_size, scale, word_dim)
    g_opt = torch.optim.Adam(gen.parameters(), lr=1e-4)

    gt = torch.rand(2, 3, 32, 32)
    batch = {"gt": gt, "lq": degrade(gt, scale).clamp(0, 1), "class_id": torch.tensor([0, 1])}
    tokens = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    text = text_enc.encode(tokens, torch.tensor([3, 2]))
    gt_levels, low_levels = build_pyramids(gt, scale, cfg.data.lowpass_sigma)

    out = gen(batch["lq"], text.words, text.sentence, text.token_mask)
    if disc is not None:
        d_opt = torch.optim.Adam(disc.parameters(), lr=1e-4)
        d_loss, _ = suite.discriminator_loss(out, batch, text if use_text else None, disc)
        d_opt.zero_grad()
        d_loss.backward()
        assert all(p.grad is not None for p in disc.parameters())
        d_opt.step()
    g_loss, logs = suite.generator_loss(out, batch, gt_levels, low_levels, text, image_enc, disc)
    assert set(logs) == terms | {"g_total"}
    g_opt.zero_grad()
    g_loss.backward()
    assert all(p.grad is not None for p in gen.parameters())  # no unused parameters (DDP)
    g_opt.step()


def _ablations_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ablations.py"
    spec = importlib.util.spec_from_file_location("ablations_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_merges_a_config_across_sweeps_and_averages_its_seeds(tmp_path):
    import json

    bench = _ablations_script()
    preset, overrides = bench.SUITES["table2"]["quickstart"]

    def final(suite, name, seed, acc, over=overrides):
        return {"suite": suite, "name": name, "seed": seed, "preset": preset,
                "overrides": list(over), "step": 1000 + seed, "final": True,
                "pattern_1obj": acc, "pattern_2obj": acc, "edit": acc,
                "eval": {"pattern_accuracy_two_objects": acc, "psnr": 30.0 + seed}}  # fmt: skip

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(final("table2", "quickstart", 1, 0.8)) + "\n")
    # the same config under another sweep's name, and a row the table2 suite does not have
    b.write_text(json.dumps(final("four_loss", "quickstart", 0, 0.6)) + "\n"
                 + json.dumps(final("four_loss", "other", 0, 0.1, ["loss.tic=9"])) + "\n")  # fmt: skip
    text = bench.report([str(a), str(b)], "table2")
    rows = [r for r in text.splitlines() if r.startswith("| table2 / quickstart | 1,0 |")]
    assert len(rows) == 1  # one row, both seeds
    assert "0.700 ± 0.100" in rows[0] and "30.50 ± 0.50" in rows[0]
    assert "other" not in text and "four_loss" not in text
    unfiltered = bench.report([str(b), str(a)])
    assert "| four_loss / quickstart | 0,1 |" in unfiltered  # named as first seen
    assert "| four_loss / other | 0 |" in unfiltered


def test_every_benchmark_row_is_a_valid_config_and_set_overrides_go_last():
    """Each row of benchmarks/ablations.py is a preset plus overrides that load (a typo in a key
    or a combination that does nothing fails here, not after a DAMSM of minutes)."""
    bench = _ablations_script()
    for suite, rows in bench.SUITES.items():
        for name, (preset, overrides) in rows.items():
            try:
                load_config(preset, overrides)
            except ConfigError as err:
                pytest.fail(f"{suite}/{name}: {err}")
    preset, overrides = bench._spec(
        "two_object", "preset_4loss_tamxy", ["generator.tam_coords=false"]
    )
    assert overrides[-1] == "generator.tam_coords=false"
    assert not load_config(preset, overrides).generator.tam_coords
    assert load_config(*bench.SUITES["two_object"]["preset_4loss_tamxy"]).generator.tam_coords
