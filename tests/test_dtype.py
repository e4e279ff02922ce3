"""bf16 inference: every preset runs in bf16, ``dtype="auto"`` picks bf16 only where it is fast,
and bf16 agrees with float32 to >= 45 dB PSNR on real photographs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tgsr.config import TextEncoderConfig, load_config, preset_names
from tgsr.device import fast_bf16
from tgsr.errors import TGSRError
from tgsr.models import GeneratorBase, TextEncoder, build_generator
from tgsr.pipeline import PipelineInfo, TGSRPipeline, cast_generator, resolve_dtype
from tgsr.text import Vocabulary

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_sample"
CAPTION = "a small bird with a red head and black wings on a branch"


def _narrow(preset: str, **flags) -> tuple[GeneratorBase, int]:
    cfg = load_config(preset, ["generator.channels=8"])
    torch.manual_seed(0)
    gcfg = replace(cfg.generator, **flags)
    return build_generator(gcfg, 16, cfg.data.scale).eval(), cfg.data.max_words


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_runs_in_bf16(preset):
    gen, t = _narrow(preset)
    cast_generator(gen, torch.bfloat16)
    norms = [m for m in gen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    lq = torch.rand(2, 3, 4, 5, dtype=torch.bfloat16)
    words = torch.randn(2, 16, t, dtype=torch.bfloat16)
    mask = torch.arange(t)[None].expand(2, -1) >= torch.tensor([[3], [t]])
    with torch.inference_mode():
        out = gen(lq, words, torch.randn(2, 16, dtype=torch.bfloat16), mask)
    assert out.sr.dtype == torch.bfloat16 and out.sr.shape == (2, 3, 4 * gen.scale, 5 * gen.scale)
    assert torch.isfinite(out.sr.float()).all()


def test_auto_dtype_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert not fast_bf16("cpu") and resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert fast_bf16("cpu") and resolve_dtype("auto", "cpu") == torch.bfloat16
    assert resolve_dtype("fp32", "cpu") == torch.float32
    assert resolve_dtype(torch.bfloat16) == torch.bfloat16
    with pytest.raises(TGSRError, match="auto, float32 or bf16"):
        resolve_dtype("int8")


def _photos() -> list[np.ndarray]:
    """Real photographs: matplotlib's sample portrait and, when present, CUB and COCO photos
    from the shared real sample; each downscaled to a 16 x 16 LR input."""
    import matplotlib

    paths = [Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    if REAL.is_dir():
        paths += sorted((REAL / "cub" / "CUB_200_2011" / "images").glob("*/*.jpg"))[:1]
        paths += sorted((REAL / "coco" / "train2017").glob("*.jpg"))[:1]
    photos = []
    for p in paths:
        if p.is_file():
            img = Image.open(p).convert("RGB")
            side = min(img.size)
            img = img.crop((0, 0, side, side)).resize((16, 16), Image.BICUBIC)
            photos.append(np.asarray(img))
    if not photos:
        pytest.skip("no real photograph available")
    return photos


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("preset", ["quickstart", "celeba_attr_released_x8"])
def test_bf16_agrees_with_fp32_on_real_photographs(preset):
    """bf16 vs float32 output (uint8, what a user saves) >= 45 dB PSNR.

    Meaningful only if the network's own output matters: the image heads of the random model
    are scaled up so its output is far from the bicubic base it adds to (asserted: < 30 dB
    against plain bicubic), so bf16 errors anywhere in the network would show."""
    gen, t = _narrow(preset)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if ("to_image" in name or "refine_out" in name) and p.dim() == 4:
                p.normal_(0, 0.05)
    vocab = Vocabulary.build([CAPTION])
    torch.manual_seed(1)
    text_encoder = TextEncoder(TextEncoderConfig(16, 8, 0.0), len(vocab)).eval()
    pipe = TGSRPipeline(gen, text_encoder, vocab, PipelineInfo(gen.scale, 8, t))
    for lq in _photos():
        ref = pipe.to(dtype="float32")(lq, CAPTION, output_type="np").images[0]
        low = pipe.to(dtype="bf16")(lq, CAPTION, output_type="np").images[0]
        size = ref.shape[1], ref.shape[0]
        bicubic = np.asarray(Image.fromarray(lq).resize(size, Image.BICUBIC))
        assert _psnr(ref, bicubic) < 30  # the network, not the bicubic base, makes the output
        assert _psnr(low, ref) >= 45
