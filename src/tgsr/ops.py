"""The Gaussian low-pass, one op for the data pipeline, the models and ONNX export.

The low-pass ground truth of the L2 loss (paper Sec. 3.4; docs/paper_vs_code.md R5) is
``lowpass(gt_level, sigma=2)`` at every pyramid level (:func:`tgsr.data.degradations.build_pyramids`),
and the released generator's refine branch reads ``lq - lowpass(lq)`` (``refine_input="highpass"``,
paper_vs_code.md R4). Both call :func:`lowpass` below, and ``torch.onnx.export`` traces it as it is
(``tests/test_export.py`` checks ONNX Runtime against PyTorch): the mirrored borders are an index
gather whose indices follow the traced height and width, and the depthwise kernel is built for the
channel count read as a constant (a model's image channels are fixed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_kernel", "lowpass", "symmetric_index"]


def gaussian_kernel(sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """1-D normalised Gaussian, radius ``ceil(truncate * sigma)`` (13 taps for sigma = 2)."""
    radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def symmetric_index(n: int, pad: int, device) -> torch.Tensor:
    """Indices of a length ``n`` signal padded by ``pad`` on each side, mirrored (edge repeated,
    MATLAB's ``symmetric``); ``pad`` may exceed ``n`` (the mirror then repeats)."""
    i = torch.arange(-pad, n + pad, device=device)
    i = torch.remainder(i, 2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def lowpass(img: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` px, truncated at ``ceil(3 sigma)``.

    Separable depthwise convolution; borders are mirrored with the edge pixel repeated
    (MATLAB's ``symmetric``), which works for any image size. Constants are preserved exactly
    up to float error. ``sigma <= 0`` returns the input. ``(B, C, H, W)`` or ``(C, H, W)``.
    """
    if sigma <= 0:
        return img
    squeeze = img.dim() == 3
    x = img.unsqueeze(0) if squeeze else img
    if x.dim() != 4:
        raise ValueError(f"lowpass expects (B, C, H, W) or (C, H, W), got {tuple(img.shape)}")
    h, w = x.shape[-2], x.shape[-1]
    # int(): a constant when traced, so the kernel below is a constant of the ONNX graph
    c = int(x.shape[1])
    k = gaussian_kernel(sigma).to(dtype=x.dtype, device=x.device)
    r = (k.numel() - 1) // 2
    x = x.index_select(2, symmetric_index(h, r, x.device))  # (B, C, H + 2r, W)
    x = x.index_select(3, symmetric_index(w, r, x.device))  # (B, C, H + 2r, W + 2r)
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)  # (B, C, H, W + 2r)
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)  # (B, C, H, W)
    return x.squeeze(0) if squeeze else x
