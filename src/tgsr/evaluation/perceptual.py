"""LPIPS and FID through torchmetrics, from local weights only (never a download).

What torchmetrics 1.x needs (read from its source):

* **LPIPS** (``LearnedPerceptualImagePatchSimilarity``): the LPIPS linear layers ship inside
  torchmetrics (``torchmetrics/functional/image/lpips_models/{alex,vgg,squeeze}.pth``), but the
  backbone comes from torchvision's ImageNet weights (``AlexNet_Weights.DEFAULT`` ...), which
  torchvision loads with ``torch.hub.load_state_dict_from_url`` from
  ``<torch hub dir>/checkpoints/<file>`` (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``),
  downloading it when the file is absent. For the default AlexNet that is
  ``alexnet-owt-7be5be79.pth`` from ``https://download.pytorch.org/models/``.
* **FID** (``FrechetInceptionDistance``): needs the ``torch-fidelity`` package; its
  ``FeatureExtractorInceptionV3`` reads the TF-ported FID Inception
  ``weights-inception-2015-12-05-6726825d.pth`` from the torch hub ``checkpoints`` folder
  (downloaded from torch-fidelity's GitHub release when absent), unless torchmetrics is given
  ``feature_extractor_weights_path``.

Here the files are looked up first (an explicit path, or the torch hub cache) and the metric is
built only when they exist: the path is handed over explicitly (FID) or through a temporary
hub folder (LPIPS), and ``torch.hub.download_url_to_file`` is blocked while the metric is
built. When something is missing the wrapper is *unavailable*: ``compute()`` returns None and
``reason`` says which file to put where. A report then says "unavailable", never a number.

Both wrappers round ``sr`` to 8 bit first, like the other metrics (a saved PNG).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from tgsr.data.degradations import quantize

__all__ = [
    "FID_WEIGHTS_FILE",
    "FIDMetric",
    "LPIPSMetric",
    "fid_status",
    "hub_checkpoints_dir",
    "lpips_status",
]

_LPIPS_BACKBONES = {  # torchmetrics net_type -> torchvision weights enum, file, url
    "alex": ("AlexNet_Weights", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("VGG16_Weights", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": (
        "SqueezeNet1_1_Weights",
        "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    ),
}
FID_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + FID_WEIGHTS_FILE
)


def hub_checkpoints_dir() -> Path:
    """``<torch hub dir>/checkpoints`` (follows ``TORCH_HOME`` / ``torch.hub.set_dir``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _lpips_backbone(net: str) -> tuple[str, str]:
    """(file name, url) of the torchvision backbone torchmetrics' LPIPS loads for ``net``."""
    if net not in _LPIPS_BACKBONES:
        raise ValueError(f"net must be one of {', '.join(_LPIPS_BACKBONES)}, got {net!r}")
    enum_name, url = _LPIPS_BACKBONES[net]
    try:  # follow the installed torchvision if it moved the file (lazy: seconds to import)
        import torchvision.models

        url = getattr(torchvision.models, enum_name).DEFAULT.url
    except (ImportError, AttributeError):
        pass
    return url.rsplit("/", 1)[-1], url


def _find(filename: str, explicit: str | Path | None) -> Path | None:
    """An existing weights file: ``explicit`` (a file, or a folder holding ``filename`` directly,
    in ``checkpoints/`` or in ``hub/checkpoints/``), else the torch hub cache."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        for c in (p / filename, p / "checkpoints" / filename, p / "hub" / "checkpoints" / filename):
            if c.is_file():
                return c
        return None
    c = hub_checkpoints_dir() / filename
    return c if c.is_file() else None


def _lpips_linear_layers(net: str) -> Path | None:
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = (
        Path(list(spec.submodule_search_locations)[0])
        / "functional/image/lpips_models"
        / f"{net}.pth"
    )
    return p if p.is_file() else None


def lpips_status(weights: str | Path | None = None, net: str = "alex") -> tuple[bool, str]:
    """``(True, where the weights are)`` or ``(False, how to provide them)``; never downloads.

    ``weights``: the torchvision backbone file (or a folder holding it); None = torch hub cache.
    """
    filename, url = _lpips_backbone(net)
    if importlib.util.find_spec("torchvision") is None:
        return False, "unavailable: LPIPS needs torchvision (pip install torchvision)"
    if _lpips_linear_layers(net) is None:
        return False, f"unavailable: this torchmetrics has no lpips_models/{net}.pth linear layers"
    found = _find(filename, weights)
    if found is None:
        where = f"{weights}" if weights is not None else f"{hub_checkpoints_dir()}"
        return False, (
            f"unavailable: LPIPS ({net}) needs the torchvision backbone {filename}, not found in "
            f"{where}; download {url} into {hub_checkpoints_dir()} (or set eval.lpips_weights "
            "to the file)"
        )
    return True, f"LPIPS ({net}) backbone: {found}"


def fid_status(weights: str | Path | None = None) -> tuple[bool, str]:
    """``(True, where the weights are)`` or ``(False, how to provide them)``; never downloads."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return False, (
            "unavailable: FID needs the torch-fidelity package (pip install torch-fidelity) and "
            f"its Inception weights {FID_WEIGHTS_FILE} in {hub_checkpoints_dir()} "
            f"(from {FID_WEIGHTS_URL})"
        )
    found = _find(FID_WEIGHTS_FILE, weights)
    if found is None:
        where = f"{weights}" if weights is not None else f"{hub_checkpoints_dir()}"
        return False, (
            f"unavailable: FID needs the Inception weights {FID_WEIGHTS_FILE}, not found in "
            f"{where}; download {FID_WEIGHTS_URL} into {hub_checkpoints_dir()}"
        )
    return True, f"FID Inception weights: {found}"


# ----------------------------------------------------------------------------- offline building


class _DownloadBlocked(RuntimeError):
    pass


@contextlib.contextmanager
def _no_download() -> Iterator[None]:
    """Make any torch.hub download fail instead of reaching the network."""

    def refuse(url, *args, **kwargs):
        raise _DownloadBlocked(f"tgsr never downloads weights (tried {url})")

    saved = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = saved


@contextlib.contextmanager
def _hub_with(path: Path, filename: str) -> Iterator[None]:
    """Point the torch hub at a temporary folder where ``checkpoints/filename`` is ``path``."""
    if path.name == filename and path.parent == hub_checkpoints_dir():
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tgsr-hub-") as tmp:
        link = Path(tmp) / "checkpoints" / filename
        link.parent.mkdir()
        try:
            os.symlink(path.resolve(), link)
        except OSError:  # no symlinks (Windows without privileges): copy
            shutil.copyfile(path, link)
        saved = getattr(torch.hub, "_hub_dir", None)
        torch.hub.set_dir(tmp)
        try:
            yield
        finally:
            torch.hub._hub_dir = saved  # back to the previous setting (None = follow TORCH_HOME)


def _to_batch(img: torch.Tensor) -> torch.Tensor:
    img = img.detach()
    return img.unsqueeze(0) if img.dim() == 3 else img


class LPIPSMetric:
    """Mean LPIPS (Zhang et al. 2018; lower = closer) of SR vs GT, or None when unavailable.

    ``update(sr, gt)`` takes ``(B, 3, H, W)`` in [0, 1]; ``compute()`` -> float | None;
    ``reason`` says why it is None.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        net: str = "alex",
        device: str | torch.device = "cpu",
    ) -> None:
        self.net_type = net
        self.device = torch.device(device)
        self.available, self.reason = lpips_status(weights, net)
        self._metric = None
        self._count = 0
        if not self.available:
            return
        filename, _ = _lpips_backbone(net)
        path = _find(filename, weights)
        try:  # lazy: seconds to import, and only when the LPIPS weights are present
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            with _no_download(), _hub_with(path, filename):
                metric = LearnedPerceptualImagePatchSimilarity(
                    net_type=net, reduction="none", normalize=True
                )
        except Exception as exc:  # noqa: BLE001 - a broken file makes the metric unavailable
            self.available, self.reason = False, f"unavailable: loading {path} failed ({exc})"
            return
        self._metric = metric.to(self.device)
        self.reason = None

    @torch.no_grad()
    def update(self, sr: torch.Tensor, gt: torch.Tensor) -> None:
        if self._metric is None:
            return
        sr = quantize(_to_batch(sr).float()).to(self.device)
        gt = quantize(_to_batch(gt).float()).to(self.device)
        self._metric.update(sr, gt)
        self._count += sr.shape[0]

    def scores(self) -> torch.Tensor | None:
        """Per-image LPIPS ``(N,)`` seen so far, or None."""
        if self._metric is None or self._count == 0:
            return None
        return self._metric.compute().flatten().cpu()

    def compute(self) -> float | None:
        s = self.scores()
        if s is None:
            if self._metric is not None:
                self.reason = "n/a (no images)"
            return None
        return float(s.double().mean())


class FIDMetric:
    """FID (Heusel et al. 2017; lower = closer) between the SR and GT sets, or None.

    Uses torchmetrics' ``FrechetInceptionDistance`` (2048-d pool features of the TF-ported FID
    Inception, images resized to 299 inside). With a few images FID is strongly biased; the
    value is for comparing models on the same image set only.
    """

    def __init__(
        self, weights: str | Path | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.available, self.reason = fid_status(weights)
        self._metric = None
        self.num_images = 0
        if not self.available:
            return
        path = _find(FID_WEIGHTS_FILE, weights)
        try:  # lazy: needs the optional torch-fidelity ([fid] extra); seconds to import
            from torchmetrics.image.fid import FrechetInceptionDistance

            with _no_download():
                metric = FrechetInceptionDistance(
                    feature=2048, normalize=True, feature_extractor_weights_path=str(path)
                )
        except Exception as exc:  # noqa: BLE001 - a broken file makes the metric unavailable
            self.available, self.reason = False, f"unavailable: loading {path} failed ({exc})"
            return
        self._metric = metric.to(self.device)
        self.reason = None

    @torch.no_grad()
    def update(self, sr: torch.Tensor, gt: torch.Tensor) -> None:
        if self._metric is None:
            return
        sr = quantize(_to_batch(sr).float()).to(self.device)
        gt = quantize(_to_batch(gt).float()).to(self.device)
        self._metric.update(gt, real=True)
        self._metric.update(sr, real=False)
        self.num_images += sr.shape[0]

    def compute(self) -> float | None:
        if self._metric is None:
            return None
        if self.num_images < 2:
            self.reason = f"n/a (FID needs at least 2 images, got {self.num_images})"
            return None
        return float(self._metric.compute())
