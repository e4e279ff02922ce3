"""PSNR / SSIM on Y, LR-consistency PSNR, and the offline LPIPS / FID wrappers."""

from __future__ import annotations

import math
import urllib.request

import pytest
import torch

from tgsr.data.degradations import degrade, quantize
from tgsr.evaluation import perceptual
from tgsr.evaluation.metrics import lr_psnr, psnr_y, rgb_to_y, ssim_y


def _smooth(seed: int, size: int = 32, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return quantize(x)


def test_rgb_to_y_range():
    black, white = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert torch.allclose(rgb_to_y(black), torch.full((1, 1, 2, 2), 16.0))
    assert torch.allclose(rgb_to_y(white), torch.full((1, 1, 2, 2), 235.0))
    red = torch.zeros(3, 1, 1)
    red[0] = 1
    assert rgb_to_y(red).item() == pytest.approx(16 + 65.481)


def test_identical_images_give_inf_and_one():
    x = _smooth(0)
    assert torch.isinf(psnr_y(x, x, border=4)).all()
    assert torch.allclose(ssim_y(x, x, border=4), torch.ones(2, dtype=torch.float64))


def test_known_mse_gives_known_psnr():
    gt = torch.full((1, 3, 16, 16), 128 / 255)
    sr = torch.full((1, 3, 16, 16), 138 / 255)
    dy = 10 * (65.481 + 128.553 + 24.966) / 255  # Y difference of a 10-level grey step
    expected = 10 * math.log10(255**2 / dy**2)
    assert psnr_y(sr, gt).item() == pytest.approx(expected, abs=1e-9)


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 100 / 255, 150 / 255
    gt, sr = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    ya, yb = 16 + 219 * a, 16 + 219 * b
    c1 = (0.01 * 255) ** 2
    expected = (2 * ya * yb + c1) / (ya**2 + yb**2 + c1)
    assert ssim_y(sr, gt).item() == pytest.approx(expected, abs=1e-9)


def test_ssim_agrees_with_torchmetrics_valid_region():
    # torchmetrics 1.x averages its SSIM map over a reflect-padded image; Wang et al.'s
    # definition (ours) averages the valid positions only: the cropped map must agree.
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    gt = _smooth(1, 48, 1)
    sr = quantize(gt + 0.05 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2)))
    ours = ssim_y(sr, gt, border=0).item()
    _, full = tm_ssim(
        rgb_to_y(sr).double(), rgb_to_y(gt).double(), data_range=255.0, return_full_image=True
    )
    assert ours == pytest.approx(full[..., 5:-5, 5:-5].mean().item(), abs=1e-6)


def test_border_crop_and_8bit_rounding():
    gt = _smooth(3)
    sr = gt.clone()
    sr[..., :2, :] = 1 - sr[..., :2, :]  # differences only inside a 2-pixel border
    assert torch.isfinite(psnr_y(sr, gt, border=0)).all()
    assert torch.isinf(psnr_y(sr, gt, border=2)).all()
    # differences below half an 8-bit step vanish (the image is rounded like a saved PNG)
    assert torch.isinf(psnr_y(gt + 0.3 / 255, gt)).all()
    assert psnr_y(gt, gt).shape == (2,)


def test_shape_errors():
    with pytest.raises(ValueError):
        psnr_y(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError):
        psnr_y(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), border=4)


def test_lr_psnr_is_inf_for_the_ground_truth_and_drops_with_noise():
    gt = _smooth(4)
    lq = quantize(degrade(gt, 4))
    assert torch.isinf(lr_psnr(gt, lq, scale=4)).all()
    noisy = gt + 0.1 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(0))
    value = lr_psnr(noisy, lq, scale=4)
    assert torch.isfinite(value).all() and (value > 20).all()
    with pytest.raises(ValueError):
        lr_psnr(gt, lq, scale=2)


# ----------------------------------------------------------------------------- LPIPS / FID


@pytest.fixture
def offline_empty_hub(tmp_path, monkeypatch):
    """TORCH_HOME at an empty folder and every download path raising."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_lpips_unavailable_without_weights(offline_empty_hub):
    ok, message = perceptual.lpips_status()
    assert not ok
    assert "alexnet-owt-7be5be79.pth" in message and str(offline_empty_hub) in message
    metric = perceptual.LPIPSMetric()
    metric.update(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert not metric.available and metric.compute() is None
    assert metric.reason.startswith("unavailable")


def test_fid_unavailable_without_weights(offline_empty_hub):
    ok, message = perceptual.fid_status()
    assert not ok and message.startswith("unavailable")
    assert perceptual.FID_WEIGHTS_FILE in message
    metric = perceptual.FIDMetric()
    metric.update(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert metric.compute() is None and "unavailable" in metric.reason


def test_lpips_from_local_backbone_file(offline_empty_hub, tmp_path):
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "my_squeezenet.pth"  # any name: it is handed over explicitly
    torch.save(torchvision.models.squeezenet1_1().state_dict(), weights)
    ok, _ = perceptual.lpips_status(weights, net="squeeze")
    assert ok
    metric = perceptual.LPIPSMetric(weights, net="squeeze")
    assert metric.available, metric.reason
    x = _smooth(5, 64)
    metric.update(x, x)
    assert metric.compute() == pytest.approx(0.0, abs=1e-6)
    metric.update(x, _smooth(6, 64))
    assert metric.scores().shape == (4,) and metric.compute() > 0
    assert torch.hub._hub_dir is None  # the temporary hub folder was undone
