"""Full-reference fidelity metrics: PSNR / SSIM on the Y channel and LR-consistency PSNR.

Conventions (the usual SR evaluation protocol):

* **8-bit quantisation.** ``sr`` is rounded to 8 bit first (``round(sr * 255) / 255``, clamped
  to [0, 1], half away from zero), exactly as if it had been saved as a PNG and read back, so a
  metric never rewards sub-quantum differences a saved image would not have. ``gt`` is
  quantised the same way (a no-op for ground truth read from 8-bit files).
* **Y channel.** ITU-R BT.601 luma in the [16, 235] studio range, on [0, 1] RGB inputs:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (MATLAB's ``rgb2ycbcr`` first row). Y is kept in
  float (not rounded again), so values are in [0, 255] and the PSNR peak is 255.
* **Border crop.** ``border`` pixels (the SR convention: the scale factor) are removed from every
  side before the metric is computed.
* **SSIM** is Wang et al. 2004 ("Image quality assessment: from error visibility to structural
  similarity", IEEE TIP): an 11x11 Gaussian window (sigma = 1.5), K1 = 0.01, K2 = 0.03,
  L = 255, computed over the *valid* positions only (no padding) and averaged.
* Every function returns one value per image: a float64 tensor of shape ``(B,)``. Identical
  images give ``inf`` PSNR and SSIM 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tgsr.data.degradations import Method, degrade, quantize

__all__ = ["lr_psnr", "psnr", "psnr_y", "rgb_to_y", "ssim_y"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _as_batch(img: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.is_tensor(img):
        raise TypeError(f"{name} must be a torch tensor, got {type(img).__name__}")
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"{name} must be (B, 3, H, W) or (3, H, W), got {tuple(img.shape)}")
    return img.detach().to(dtype=torch.float64, device="cpu")


def _check_pair(sr: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sr, gt = _as_batch(sr, "sr"), _as_batch(gt, "gt")
    if sr.shape != gt.shape:
        raise ValueError(f"sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape")
    return quantize(sr), quantize(gt)


def _crop(img: torch.Tensor, border: int) -> torch.Tensor:
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return img
    h, w = img.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"border={border} leaves nothing of a {h}x{w} image")
    return img[..., border : h - border, border : w - border]


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB in [0, 1]: ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` in [16, 235] (float)."""
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"expected (..., 3, H, W), got {tuple(img.shape)}")
    r, g, b = img.unbind(dim=-3)
    y = 16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b
    return y.unsqueeze(-3)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> torch.Tensor:
    """Per-image PSNR ``10 log10(peak^2 / MSE)`` of two ``(B, ...)`` tensors; ``inf`` if equal."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)  # (B,)
    out = torch.full_like(mse, math.inf)
    nz = mse > 0
    out[nz] = 10.0 * torch.log10(peak**2 / mse[nz])
    return out


def psnr_y(sr: torch.Tensor, gt: torch.Tensor, border: int = 0) -> torch.Tensor:
    """PSNR on Y (peak 255) after 8-bit rounding and a ``border`` crop; ``(B,)`` float64."""
    sr, gt = _check_pair(sr, gt)
    return psnr(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(gt), border), 255.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).view(1, 1, size, size)  # (1, 1, k, k)


def _ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM map of ``(B, 1, H, W)`` float64 images over the valid window positions."""
    win = _gaussian_window()
    if min(x.shape[-2:]) < win.shape[-1]:
        raise ValueError(
            f"SSIM needs images of at least 11x11 after the crop, got {tuple(x.shape[-2:])}"
        )
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    var_x = F.conv2d(x * x, win) - mu_x**2
    var_y = F.conv2d(y * y, win) - mu_y**2
    cov = F.conv2d(x * y, win) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(dim=1)  # (B,)


def ssim_y(sr: torch.Tensor, gt: torch.Tensor, border: int = 0) -> torch.Tensor:
    """SSIM (Wang et al. 2004) on Y in [0, 255] after 8-bit rounding and a ``border`` crop."""
    sr, gt = _check_pair(sr, gt)
    return _ssim(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(gt), border), 255.0)


def lr_psnr(
    sr: torch.Tensor, lq: torch.Tensor, scale: int, method: Method = "bicubic"
) -> torch.Tensor:
    """LR-consistency PSNR: does the SR output still explain its input?

    ``sr`` is rounded to 8 bit, degraded with the data set's own degradation
    (:func:`tgsr.data.degradations.degrade`, MATLAB-style ``imresize(sr, 1/scale, method)``),
    rounded to 8 bit again (the LR inputs are stored as 8-bit images), and compared with ``lq``
    on **RGB** (all three channels, peak 1.0 on [0, 1] == peak 255 on 8 bit), without a border
    crop (both sides come from the same resize, borders included). ``(B,)`` float64.
    """
    sr, lq = _as_batch(sr, "sr"), _as_batch(lq, "lq")
    down = quantize(degrade(quantize(sr), scale, method))
    if down.shape != lq.shape:
        raise ValueError(
            f"degrade(sr) has shape {tuple(down.shape)} but lq is {tuple(lq.shape)} (scale={scale})"
        )
    return psnr(down, quantize(lq), 1.0)
