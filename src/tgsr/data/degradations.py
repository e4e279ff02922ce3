"""Degradations: MATLAB-style antialiased ``imresize``, Gaussian low-pass, the HR pyramid.

The paper builds its LR inputs by bicubic downsampling (Sec. 4.1); the SR community's convention
for that is MATLAB's ``imresize(I, 1/s, 'bicubic')``. :func:`imresize` follows MATLAB's documented
definition, written here from it:

* Keys cubic kernel with a = -0.5 (support 2); the bilinear option uses the triangle kernel
  (support 1), as the released code's bilinear resize does.
* Output pixel ``x`` (1-based) maps to input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``.
* When downscaling with antialiasing the kernel is stretched by ``1 / scale``: ``scale * k(scale * d)``,
  so its support (and the number of taps) grows with the factor.
* Input indices outside the image are mirrored (``symmetric``: the edge pixel is repeated);
  the weights of every output pixel are normalised to sum to 1.
* The resize is separable; the dimension with the smaller scale factor is resized first (ties:
  height first), as MATLAB does.
* MATLAB returns the input's class after each 1-D pass: for uint8 images the intermediate is
  rounded and clipped to 0..255. The numpy uint8 path does exactly that; float tensors are
  resized linearly (MATLAB's double behaviour); :func:`degrade` clamps the intermediate to
  [0, 1] (see there).

Each 1-D resize is a precomputed ``(out, in)`` weight matrix applied with a matmul, so a batch of
images costs two small matrix products.

The low-pass ground truth (paper §3.4; docs/paper_vs_code.md R5) is a Gaussian blur with
sigma = 2 px at every pyramid level: :func:`tgsr.ops.lowpass` (the one low-pass of the package,
also used by the models and traced by the ONNX export), re-exported here.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

from tgsr.ops import gaussian_kernel, lowpass

Method = Literal["bicubic", "bilinear"]

__all__ = [
    "build_pyramids",
    "degrade",
    "gaussian_kernel",
    "image_to_tensor",
    "imresize",
    "lowpass",
    "output_size",
    "quantize",
    "resize_weights",
    "tensor_to_image",
]


# ----------------------------------------------------------------------------- kernels


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel, a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _triangle(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return (1.0 - ax) * (ax <= 1)


_KERNELS = {"bicubic": (_cubic, 4.0), "bilinear": (_triangle, 2.0)}  # (kernel, width)


def output_size(in_length: int, scale: float) -> int:
    """MATLAB's ``ceil(scale * in_length)``, tolerant to float error (``64 * (1/3)``)."""
    return max(1, math.ceil(in_length * scale - 1e-9))


@lru_cache(maxsize=256)
def _weights_cached(
    in_length: int, out_length: int, scale: float, method: str, antialias: bool
) -> torch.Tensor:
    if method not in _KERNELS:
        raise ValueError(f"method must be 'bicubic' or 'bilinear', got {method!r}")
    kernel, width = _KERNELS[method]
    if scale < 1 and antialias:
        h = lambda d: scale * kernel(scale * d)  # noqa: E731 - stretched kernel
        width = width / scale
    else:
        h = kernel
    x = np.arange(1, out_length + 1, dtype=np.float64)  # 1-based output coordinates
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # (out,) input coordinates, 1-based
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # (out, taps) 1-based input indices
    w = h(u[:, None] - idx)  # (out, taps)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric (mirror) border: ... 2 1 | 1 2 ... n | n n-1 ...
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_length)]  # (out, taps) 0-based
    mat = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_length), taps), src.ravel()), w.ravel())
    return torch.from_numpy(mat)  # (out, in) float64; callers must not modify it


def _weights(
    in_length: int, out_length: int, scale: float | None, method: str, antialias: bool
) -> torch.Tensor:
    if in_length < 1 or out_length < 1:
        raise ValueError(f"lengths must be >= 1, got {in_length} -> {out_length}")
    if scale is None:
        scale = out_length / in_length
    return _weights_cached(int(in_length), int(out_length), float(scale), method, bool(antialias))


def resize_weights(
    in_length: int,
    out_length: int,
    scale: float | None = None,
    method: Method = "bicubic",
    antialias: bool = True,
) -> np.ndarray:
    """The ``(out_length, in_length)`` float64 matrix of a 1-D MATLAB-style resize.

    ``scale`` defaults to ``out_length / in_length`` (MATLAB uses the requested factor when one
    is given, which differs from ``out / in`` when the size does not divide).
    """
    return _weights(in_length, out_length, scale, method, antialias).numpy().copy()


# ----------------------------------------------------------------------------- resize


def _resize_dims(
    in_hw: tuple[int, int],
    scale: float | tuple[float, float] | None,
    size: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    if size is not None:
        out_hw = (int(size[0]), int(size[1]))
        if min(out_hw) < 1:
            raise ValueError(f"output size must be positive, got {size}")
        return out_hw, (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    sh, sw = (scale, scale) if isinstance(scale, (int, float)) else scale
    if sh <= 0 or sw <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return (output_size(in_hw[0], sh), output_size(in_hw[1], sw)), (float(sh), float(sw))


def _resize_tensor(
    x: torch.Tensor,
    out_hw: tuple[int, int],
    scales: tuple[float, float],
    method: str,
    antialias: bool,
    between=None,
) -> torch.Tensor:
    """Resize the last two dims of a float tensor; ``between`` is applied after the first pass."""
    in_h, in_w = x.shape[-2], x.shape[-1]
    steps = []
    if (in_h, scales[0]) != (out_hw[0], 1.0):
        steps.append(("h", scales[0]))
    if (in_w, scales[1]) != (out_hw[1], 1.0):
        steps.append(("w", scales[1]))
    steps.sort(key=lambda s: s[1])  # smaller scale first; stable, so height first on ties
    for i, (dim, s) in enumerate(steps):
        if i == 1 and between is not None:
            x = between(x)
        if dim == "h":
            m = _weights(in_h, out_hw[0], s, method, antialias).to(dtype=x.dtype, device=x.device)
            x = torch.matmul(m, x)  # (out_h, H) @ (..., H, W) -> (..., out_h, W)
        else:
            m = _weights(in_w, out_hw[1], s, method, antialias).to(dtype=x.dtype, device=x.device)
            x = torch.matmul(x, m.t())  # (..., h, W) @ (W, out_w) -> (..., h, out_w)
    return x


def imresize(
    img: torch.Tensor | np.ndarray,
    scale: float | tuple[float, float] | None = None,
    *,
    size: tuple[int, int] | None = None,
    method: Method = "bicubic",
    antialias: bool = True,
) -> torch.Tensor | np.ndarray:
    """MATLAB ``imresize`` (bicubic or bilinear, antialiased when shrinking).

    ``img``: a float tensor ``(..., H, W)`` (e.g. ``(B, 3, H, W)`` or ``(3, H, W)``), returned as a
    float tensor of the same dtype, not clamped; or a numpy image ``(H, W[, C])``: uint8 comes
    back as uint8 (rounded half away from zero, clipped, like MATLAB), float as float64.
    Give ``scale`` (one factor or ``(sh, sw)``; output = ``ceil(scale * size)``) or ``size=(h, w)``.
    """
    if isinstance(img, np.ndarray):
        return _imresize_numpy(img, scale, size, method, antialias)
    if not torch.is_tensor(img) or img.dim() < 2:
        raise TypeError("imresize expects a tensor (..., H, W) or a numpy image (H, W[, C])")
    if not img.is_floating_point():
        raise TypeError(f"imresize expects a float tensor, got {img.dtype}")
    out_hw, scales = _resize_dims((img.shape[-2], img.shape[-1]), scale, size)
    return _resize_tensor(img, out_hw, scales, method, antialias)


def _imresize_numpy(img, scale, size, method, antialias) -> np.ndarray:
    if img.ndim not in (2, 3):
        raise ValueError(f"numpy images must be (H, W) or (H, W, C), got shape {img.shape}")
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64))
    x = x if img.ndim == 2 else x.permute(2, 0, 1)  # (C, H, W)
    out_hw, scales = _resize_dims(img.shape[:2], scale, size)
    if img.dtype == np.uint8:  # MATLAB keeps the class: round and clip after every pass
        to8 = lambda t: torch.floor(t + 0.5).clamp_(0, 255)  # noqa: E731
        y = to8(_resize_tensor(x, out_hw, scales, method, antialias, between=to8))
    else:
        y = _resize_tensor(x, out_hw, scales, method, antialias)
    y = y if img.ndim == 2 else y.permute(1, 2, 0)
    out = y.numpy()
    return out.astype(np.uint8) if img.dtype == np.uint8 else out


# ----------------------------------------------------------------------------- LR and 8 bit


def degrade(img: torch.Tensor, scale: int, method: Method = "bicubic") -> torch.Tensor:
    """The LR image: ``imresize(img, 1 / scale, method)``, float, not quantised.

    ``img`` is ``(B, 3, H, W)`` or ``(3, H, W)`` in [0, 1]; H and W should be multiples of
    ``scale`` (otherwise the output is ``ceil(H / scale)`` as in MATLAB).

    The intermediate image (after the first 1-D pass) is clamped to [0, 1], as MATLAB clips it
    for 8-bit input, so ``quantize(degrade(x))`` stays within one 8-bit level of MATLAB's
    ``imresize(uint8_image, 1/scale)`` even where the kernel overshoots at saturated edges
    (MATLAB also rounds the intermediate to 8 bit, worth < 0.6 level at the output; we keep
    it float so the function stays differentiable). The final output is not clamped.
    """
    out_hw, scales = _resize_dims((img.shape[-2], img.shape[-1]), 1.0 / scale, None)
    return _resize_tensor(img, out_hw, scales, method, True, between=lambda t: t.clamp(0, 1))


def quantize(img: torch.Tensor) -> torch.Tensor:
    """``round(img * 255) / 255`` clamped to [0, 1]; rounds half away from zero like MATLAB's
    uint8 conversion, so ``tensor_to_image(quantize(x)) == tensor_to_image(x)``."""
    return torch.floor(img.clamp(0, 1) * 255 + 0.5) / 255


def desaturate(img: torch.Tensor, colour: float) -> torch.Tensor:
    """Keep the luma (ITU-R BT.601 Y) of ``(..., 3, H, W)`` and scale the chroma by ``colour``:
    1 = unchanged (the input itself), 0 = grey."""
    if colour == 1.0:
        return img
    y = (0.299 * img[..., 0:1, :, :] + 0.587 * img[..., 1:2, :, :]
         + 0.114 * img[..., 2:3, :, :])  # fmt: skip
    return y + colour * (img - y)


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1]."""
    if img.dtype != np.uint8 or img.ndim != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255)


def tensor_to_image(img: torch.Tensor) -> np.ndarray:
    """float ``(3, H, W)`` in [0, 1] -> uint8 ``(H, W, 3)`` (MATLAB rounding: half away from 0)."""
    if img.dim() != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(img.shape)}")
    q = torch.floor(img.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return q.permute(1, 2, 0).cpu().numpy()


# ----------------------------------------------------------------------------- pyramid


def build_pyramids(
    gt: torch.Tensor, scale: int, sigma: float = 2.0, method: Method = "bicubic"
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """HR and low-pass pyramids for every x2 stage (paper_vs_code.md R5).

    ``gt (B, 3, H, W)`` -> ``gt_levels[k]`` of size ``(H / scale) * 2^(k+1)`` for
    ``k = 0 .. log2(scale) - 1``; the last level is ``gt`` itself and the others are ``gt``
    resized with :func:`imresize` (float, not quantised). ``lowpass_levels[k] =
    lowpass(gt_levels[k], sigma)`` with the same sigma in pixels at every level.
    """
    n = int(round(math.log2(scale)))
    if scale < 2 or 2**n != scale:
        raise ValueError(f"scale must be a power of two >= 2, got {scale}")
    h, w = gt.shape[-2], gt.shape[-1]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not a multiple of the scale {scale}")
    gt_levels = [imresize(gt, 2.0 ** (k - n), method=method) for k in range(1, n)] + [gt]
    lowpass_levels = [lowpass(level, sigma) for level in gt_levels]
    return gt_levels, lowpass_levels
