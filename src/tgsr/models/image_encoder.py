"""DAMSM image encoders: (images (B, 3, H, W) in [0, 1]) -> regions (B, D, h, w), global (B, D).

* :class:`InceptionImageEncoder` (paper §3.4, facts §2; AttnGAN's ``CNN_ENCODER``): torchvision
  Inception-v3, input mapped to [-1, 1] and resized to 299² (bilinear); Mixed_6e (768×17×17) →
  1×1 conv (no bias) → D regions; Mixed_7c → average pool → Linear 2048 → D. ImageNet weights
  load from a local file; the backbone is then frozen and kept in eval mode (AttnGAN let the
  frozen BatchNorm statistics drift in DAMSM pre-training; we do not). Without weights the whole
  network trains from scratch, with a warning.
* :class:`LightImageEncoder`: a small CNN for 64² images on CPU (the synthetic benchmark).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tgsr.config import ImageEncoderConfig
from tgsr.errors import ModelFormatError


def _to_signed(images: torch.Tensor) -> torch.Tensor:
    return images * 2.0 - 1.0


class LightImageEncoder(nn.Module):
    """A small CNN for small images on CPU. Regions at input_size / 8 (8×8 = 64 regions for 64²,
    each region two periods of the benchmark's 4-px patterns), global from a 4×4 map. Inputs of
    another size are resized to ``input_size`` first. The word loss costs O(B²·T·R), so 64
    regions instead of 256 make DAMSM pre-training and the TIC loss about 4× cheaper."""

    def __init__(self, feature_dim: int = 256, channels: int = 64, input_size: int = 64):
        super().__init__()
        c = channels
        self.input_size = input_size

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


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelFormatError(f"Inception weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a format error
        raise ModelFormatError(f"cannot read Inception weights {path}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFormatError(f"{path}: not a state dict")
    return state


class InceptionImageEncoder(nn.Module):
    def __init__(
        self, feature_dim: int = 256, weights: str | None = None, load_weights: bool = True
    ):
        """``load_weights=False`` builds the architecture only (used when a saved DAMSM folder,
        which holds the whole backbone, is loaded)."""
        super().__init__()
        from torchvision.models import inception_v3

        net = inception_v3(
            weights=None, aux_logits=False, init_weights=False, transform_input=False
        )
        self.pretrained = weights is not None
        if weights is not None and load_weights:
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
        elif weights is None and load_weights:
            warnings.warn(
                "image_encoder.weights is not set: the Inception-v3 backbone trains from scratch "
                "(give a local ImageNet inception_v3 state dict for the paper's setting)",
                stacklevel=2,
            )
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


def build_image_encoder(cfg: ImageEncoderConfig, load_weights: bool = True) -> nn.Module:
    if cfg.kind == "light":
        return LightImageEncoder(cfg.feature_dim, cfg.light_channels, cfg.light_input_size)
    if cfg.kind == "inception":
        return InceptionImageEncoder(cfg.feature_dim, cfg.weights, load_weights=load_weights)
    raise ValueError(f"unknown image encoder kind {cfg.kind!r}")
