"""NIQE, the Natural Image Quality Evaluator (no reference; lower is better).

Written from Mittal, Soundararajan and Bovik, "Making a completely blind image quality analyzer",
IEEE Signal Processing Letters 20(3), 2013, and the behaviour of the authors' reference
implementation:

1. **Grey level.** The image is rounded to 8 bit and converted to BT.601 luma
   (:func:`tgsr.evaluation.metrics.rgb_to_y`, [16, 235]), rounded to integers as MATLAB's
   ``rgb2ycbcr`` returns for a uint8 image (the usual SR protocol), after a ``border`` crop.
   The image is then cropped to whole 96x96 patches (top-left kept).
2. **MSCN coefficients** (Sec. II-A): ``(I - mu) / (sigma + 1)`` with ``mu`` and ``sigma``
   local Gaussian-weighted mean and standard deviation, window 7x7 with sigma = 7/6,
   replicated borders.
3. **Patches.** The MSCN map is cut into non-overlapping 96x96 patches (P = 96, Sec. II-B).
4. **Features** per patch and scale (18; Sec. II-C/D): an asymmetric generalised Gaussian
   (AGGD) fit of the MSCN coefficients -> shape alpha and the mean of the left/right scales
   (for symmetric data this is the GGD scale); and for each of the four neighbour products
   (horizontal, vertical, main and secondary diagonal; circular shift inside the patch) an AGGD
   fit -> alpha, mean ``(beta_r - beta_l) Gamma(2/alpha) / Gamma(1/alpha)``, beta_l, beta_r.
   Fits are by moment matching: the shape is the grid value (0.2 : 0.001 : 10) whose
   generalised Gaussian ratio ``Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))`` is nearest to the
   (asymmetry-corrected) sample ratio ``E|x|^2 / E[x^2]``.
5. **Two scales**: features of the image and of its x0.5 MATLAB-bicubic resize (48x48 patches
   at the second scale, so both scales describe the same regions) -> 36 features per patch.
6. **Quality** (Eq. 10): a multivariate Gaussian (mean, covariance) is fitted to the test
   image's patch features and compared with the pristine model:
   ``D = sqrt((mu_p - mu_d)^T ((Sigma_p + Sigma_d) / 2)^+ (mu_p - mu_d))``
   (pseudo-inverse; a single-patch image has Sigma_d = 0; patches whose fit is undefined, e.g.
   perfectly flat ones, are dropped).

**Patch selection (documented choice).** As in the reference implementation, sharpness-based
selection is used when *fitting a pristine model* (:func:`fit_pristine_model`: keep the patches
whose mean local sigma exceeds 0.75 x the image's sharpest patch); a *test* image uses all of
its patches. ``niqe(..., sharpness_threshold=t)`` applies the same selection to the test image
if wanted.

**Pristine model.** The standard parameters (fitted by the authors on 125 pristine images) are
not shipped with tgsr. ``tgsr fetch niqe`` extracts ``niqe_pris_params.npz`` (keys
``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36), ``gaussian_window`` (7, 7)) from the
PyPI source distribution of basicsr with ``pip download``, into ``~/.cache/tgsr/`` (or the file
named by ``TGSR_NIQE_PARAMS``). Only that data file is used, no code.

NIQE needs at least one 96x96 patch after the border crop; smaller images get ``None`` and a
reason rather than a number.

**PI** (the Perceptual Index of the PIRM challenge, ``(10 - Ma + NIQE) / 2``) is not
implemented: Ma et al.'s score needs their trained regression-forest model, which has no
documented offline source we may ship or fetch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from tgsr.data.degradations import imresize, quantize
from tgsr.errors import TGSRError
from tgsr.evaluation.metrics import rgb_to_y

__all__ = [
    "NIQE_PATCH",
    "NIQEModel",
    "PARAMS_ENV",
    "fit_pristine_model",
    "load_pristine_model",
    "mean_niqe",
    "mscn",
    "niqe",
    "niqe_available",
    "niqe_features",
    "niqe_params_path",
    "niqe_skip_reason",
    "to_grey",
]

NIQE_PATCH = 96
PARAMS_ENV = "TGSR_NIQE_PARAMS"
PARAMS_FILE = "niqe_pris_params.npz"
NUM_FEATURES = 36
_FETCH_HINT = "run `tgsr fetch niqe` (it extracts the standard pristine model from basicsr's sdist)"


# ----------------------------------------------------------------------------- pristine model


@dataclass(frozen=True)
class NIQEModel:
    """A multivariate Gaussian over the 36 patch features."""

    mu: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)

    def save(self, file: str | Path | BinaryIO) -> None:
        """Write the same layout as the standard file (``mu_pris_param`` (1, 36), ...)."""
        np.savez(
            Path(file) if isinstance(file, (str, Path)) else file,
            mu_pris_param=self.mu.reshape(1, -1),
            cov_pris_param=self.cov,
            gaussian_window=gaussian_window(),
        )


def niqe_params_path() -> Path:
    """``$TGSR_NIQE_PARAMS`` if set, else ``$XDG_CACHE_HOME/tgsr`` (``~/.cache/tgsr``)."""
    env = os.environ.get(PARAMS_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tgsr" / PARAMS_FILE


def load_pristine_model(path: str | Path | None = None) -> NIQEModel:
    """Read a pristine-model ``.npz``; a missing or malformed file raises :class:`TGSRError`."""
    p = Path(path) if path is not None else niqe_params_path()
    if not p.is_file():
        raise TGSRError(f"NIQE pristine parameters not found at {p}: {_FETCH_HINT}")
    try:
        with np.load(p) as data:
            mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
            cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise TGSRError(f"{p} is not a NIQE parameter file ({exc}); {_FETCH_HINT}") from None
    if mu.shape != (NUM_FEATURES,) or cov.shape != (NUM_FEATURES, NUM_FEATURES):
        raise TGSRError(f"{p}: expected mu (36,) and cov (36, 36), got {mu.shape} and {cov.shape}")
    return NIQEModel(mu=mu, cov=cov)


def niqe_available(path: str | Path | None = None) -> tuple[bool, str]:
    """``(True, where)`` when the pristine model can be loaded, else ``(False, how to get it)``."""
    try:
        load_pristine_model(path)
    except TGSRError as exc:
        return False, str(exc)
    return True, f"NIQE pristine parameters: {Path(path) if path else niqe_params_path()}"


# ----------------------------------------------------------------------------- features


@lru_cache(maxsize=1)
def gaussian_window() -> np.ndarray:
    """MATLAB ``fspecial('gaussian', 7, 7/6)``: 7x7, sigma = 7/6, sums to 1."""
    x = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
    return g / g.sum()


@lru_cache(maxsize=1)
def _shape_grid() -> tuple[np.ndarray, np.ndarray]:
    """Shape values 0.2 : 0.001 : 10 and their ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))."""
    a = torch.arange(200, 10001, dtype=torch.float64) / 1000
    r = torch.exp(2 * torch.lgamma(2 / a) - torch.lgamma(1 / a) - torch.lgamma(3 / a))
    return a.numpy(), r.numpy()


def _aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching AGGD fit -> (alpha, beta_left, beta_right); NaNs when undefined."""
    x = x.ravel()
    left, right = x[x < 0], x[x > 0]
    if left.size == 0 or right.size == 0:
        return math.nan, math.nan, math.nan
    left_std = math.sqrt(float(np.mean(left * left)))
    right_std = math.sqrt(float(np.mean(right * right)))
    gamma_hat = left_std / right_std
    r_hat = float(np.mean(np.abs(x))) ** 2 / float(np.mean(x * x))
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shapes, ratios = _shape_grid()
    alpha = float(shapes[np.argmin((ratios - r_norm) ** 2)])
    k = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, left_std * k, right_std * k


_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # horizontal, vertical, main / secondary diagonal


def _patch_features(patch: np.ndarray) -> np.ndarray:
    """The 18 features of one MSCN patch."""
    alpha, bl, br = _aggd_fit(patch)
    feats = [alpha, (bl + br) / 2]
    for shift in _SHIFTS:
        pair = patch * np.roll(patch, shift, axis=(0, 1))
        alpha, bl, br = _aggd_fit(pair)
        mean = (
            math.nan
            if math.isnan(alpha)
            else (br - bl) * math.gamma(2 / alpha) / math.gamma(1 / alpha)
        )
        feats += [alpha, mean, bl, br]
    return np.asarray(feats, dtype=np.float64)


def mscn(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MSCN coefficients and the local sigma map of a ``(H, W)`` grey image (float64)."""
    x = torch.from_numpy(np.ascontiguousarray(grey, dtype=np.float64))[None, None]  # (1,1,H,W)
    win = torch.from_numpy(gaussian_window())[None, None]  # (1, 1, 7, 7)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (3, 3, 3, 3), mode="replicate"), win)

    mu = blur(x)
    sigma = torch.sqrt(torch.abs(blur(x * x) - mu * mu))
    coeffs = (x - mu) / (sigma + 1)
    return coeffs[0, 0].numpy(), sigma[0, 0].numpy()


def _blocks(a: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping ``size`` blocks, row-major: ``(H, W)`` -> ``(N, size, size)``."""
    h, w = a.shape[0] // size, a.shape[1] // size
    a = a[: h * size, : w * size].reshape(h, size, w, size)
    return a.transpose(0, 2, 1, 3).reshape(h * w, size, size)


def niqe_features(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patch features ``(N, 36)`` and patch sharpness ``(N,)`` of a grey image in [0, 255].

    The image is cropped to whole 96x96 patches; it must hold at least one.
    """
    grey = np.asarray(grey, dtype=np.float64)
    rows, cols = grey.shape[0] // NIQE_PATCH, grey.shape[1] // NIQE_PATCH
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs at least {NIQE_PATCH}x{NIQE_PATCH} pixels, got {grey.shape}")
    img = grey[: rows * NIQE_PATCH, : cols * NIQE_PATCH]
    per_scale, sharpness = [], None
    for level in range(2):
        coeffs, sigma = mscn(img)
        size = NIQE_PATCH // (level + 1)
        per_scale.append(np.stack([_patch_features(p) for p in _blocks(coeffs, size)]))
        if level == 0:
            sharpness = _blocks(sigma, size).mean(axis=(1, 2))
            img = imresize(img, 0.5)  # MATLAB bicubic, antialiased; (H/2, W/2) float64
    return np.concatenate(per_scale, axis=1), sharpness


def to_grey(img: torch.Tensor | np.ndarray, border: int = 0) -> np.ndarray:
    """An RGB image -> rounded BT.601 Y in [16, 235] as float64 ``(H, W)``, border cropped.

    Accepts a float tensor ``(3, H, W)`` / ``(1, 3, H, W)`` in [0, 1] or a uint8 ``(H, W, 3)``
    numpy image.
    """
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"numpy images must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).double() / 255
    else:
        t = img.detach().double().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) image, got {tuple(img.shape)}")
    y = torch.floor(rgb_to_y(quantize(t))[0] + 0.5).numpy()  # (H, W), MATLAB rounding
    if border:
        y = y[border:-border, border:-border]
    return y


def niqe_skip_reason(height: int, width: int, border: int = 0) -> str | None:
    """Why NIQE cannot score an ``height x width`` image, or None when it can."""
    h, w = height - 2 * border, width - 2 * border
    if h < NIQE_PATCH or w < NIQE_PATCH:
        return f"n/a (images smaller than {NIQE_PATCH}x{NIQE_PATCH} after a {border}-pixel border crop)"
    return None


# ----------------------------------------------------------------------------- quality


def _mvg(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = features[np.all(np.isfinite(features), axis=1)]
    if len(features) == 0:
        raise ValueError("no usable NIQE patch (every patch is flat)")
    mu = features.mean(axis=0)
    cov = np.cov(features, rowvar=False) if len(features) > 1 else np.zeros((mu.size, mu.size))
    return mu, cov


def fit_pristine_model(
    images: Iterable[torch.Tensor | np.ndarray], border: int = 0, sharpness_threshold: float = 0.75
) -> NIQEModel:
    """Fit a pristine model on (RGB) images, keeping each image's sharp patches.

    A patch is kept when its mean local sigma exceeds ``sharpness_threshold`` times the sharpest
    patch of its image (the reference implementation's selection, threshold 0.75).
    """
    feats = []
    for img in images:
        f, sharp = niqe_features(to_grey(img, border))
        feats.append(f[sharp > sharpness_threshold * sharp.max()] if sharp.max() > 0 else f[:0])
    mu, cov = _mvg(np.concatenate(feats))
    return NIQEModel(mu=mu, cov=cov)


def niqe(
    img: torch.Tensor | np.ndarray,
    border: int = 0,
    model: NIQEModel | None = None,
    sharpness_threshold: float | None = None,
) -> float | None:
    """NIQE of one RGB image (lower = more natural), or None when it is too small
    (:func:`niqe_skip_reason` says why). Without ``model`` the standard pristine parameters are
    loaded (:class:`TGSRError` when absent: run ``tgsr fetch niqe``)."""
    h, w = (img.shape[0], img.shape[1]) if isinstance(img, np.ndarray) else img.shape[-2:]
    if niqe_skip_reason(int(h), int(w), border) is not None:
        return None
    model = model if model is not None else _default_model()
    feats, sharp = niqe_features(to_grey(img, border))
    if sharpness_threshold is not None and sharp.max() > 0:
        feats = feats[sharp > sharpness_threshold * sharp.max()]
    mu, cov = _mvg(feats)
    diff = model.mu - mu
    inv = np.linalg.pinv((model.cov + cov) / 2)
    return float(math.sqrt(max(float(diff @ inv @ diff), 0.0)))


def mean_niqe(
    images: torch.Tensor | Iterable[torch.Tensor | np.ndarray],
    border: int = 0,
    model: NIQEModel | None = None,
) -> tuple[float | None, str | None]:
    """Mean NIQE over images: ``(value, None)``, or ``(None, reason)`` when it cannot be computed
    (images too small, pristine parameters missing)."""
    values = []
    for img in images:
        h, w = (img.shape[0], img.shape[1]) if isinstance(img, np.ndarray) else img.shape[-2:]
        reason = niqe_skip_reason(int(h), int(w), border)
        if reason is not None:
            return None, reason
        if model is None:
            ok, message = niqe_available()
            if not ok:
                return None, f"unavailable: {message}"
            model = _default_model()
        values.append(niqe(img, border, model))
    if not values:
        return None, "n/a (no images)"
    return float(np.mean(values)), None


def _default_model() -> NIQEModel:
    path = niqe_params_path()
    return _load_cached(str(path), path.stat().st_mtime_ns if path.is_file() else 0)


@lru_cache(maxsize=2)
def _load_cached(path: str, _mtime: int) -> NIQEModel:
    return load_pristine_model(path)
