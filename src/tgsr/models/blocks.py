"""Small building blocks shared by the generators and the discriminator.

Paper preset (TGSR §3.3): 3×3 convs + ReLU (or LeakyReLU 0.2), residual blocks of two convs
with a skip, 6×6 stride-2 deconvolutions. Released-code preset (paper_vs_code.md R4):
BatchNorm + GLU blocks and nearest-upsample conv blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def make_activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def conv3(in_ch: int, out_ch: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=bias)


def conv_of_cat(conv: nn.Conv2d, parts: list[torch.Tensor]) -> torch.Tensor:
    """``conv(torch.cat(parts, 1))`` without the concatenated copy: one convolution per part
    with its slice of the weights, summed in place (equal up to rounding). At inference the
    copy is the widest tensor of a stage (128-192 channels at the output size): skipping it
    lowers the peak memory and the time of a x8 forward."""
    if len(parts) == 1:
        return conv(parts[0])
    out, start = None, 0
    for part in parts:
        stop = start + part.shape[1]
        bias = conv.bias if out is None else None
        y = F.conv2d(part, conv.weight[:, start:stop], bias, conv.stride, conv.padding)
        out = y if out is None else out.add_(y)
        start = stop
    if start != conv.in_channels:
        raise ValueError(f"parts have {start} channels, the conv takes {conv.in_channels}")
    return out


def deconv_x2(in_ch: int, out_ch: int) -> nn.ConvTranspose2d:
    """6×6 transposed conv, stride 2, padding 2: exactly ×2 ((h-1)*2 - 4 + 6 = 2h)."""
    return nn.ConvTranspose2d(in_ch, out_ch, 6, 2, 2)


def image_head(
    in_ch: int, kernel: int = 3, bias: bool = True, init_scale: float = 0.1
) -> nn.Conv2d:
    """A conv to 3 channels. Its weights start small (not zero) so that a residual image head
    starts close to the plain upsample while the text still reaches the output."""
    conv = nn.Conv2d(in_ch, 3, kernel, 1, kernel // 2, bias=bias)
    with torch.no_grad():
        conv.weight.mul_(init_scale)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


class ResidualBlock(nn.Module):
    """conv3 → act → conv3, plus the identity (paper §3.3: "two convolution layers and a residual
    connection")."""

    def __init__(self, channels: int, activation: str = "relu"):
        super().__init__()
        self.body = nn.Sequential(
            conv3(channels, channels), make_activation(activation), conv3(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return x + self.body(x)
        return self.body(x).add_(x)  # without autograd no new tensor (the sum is the same)


class GLUConvBlock(nn.Module):
    """Released-code block: conv3(C→2C) → BN → GLU → conv3(C→C) → BN, with an optional skip
    (``ResBlock`` with ``skip=True``; the refine branch's inter-scale blocks have none)."""

    def __init__(self, channels: int, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.body = nn.Sequential(
            conv3(channels, 2 * channels, bias=False),
            nn.BatchNorm2d(2 * channels),
            nn.GLU(dim=1),
            conv3(channels, channels, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.skip else y


def glu_conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    """conv(in → 2·out, no bias) → BN → GLU: ``out`` channels (released ``im2f`` / ``convin``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, 2 * out_ch, kernel, 1, kernel // 2, bias=False),
        nn.BatchNorm2d(2 * out_ch),
        nn.GLU(dim=1),
    )


def glu_up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Released ``upBlock``: nearest ×2 → conv3(in → 2·out) → BN → GLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), *glu_conv(in_ch, out_ch))


def coord_channels(
    x: torch.Tensor, frame: torch.Tensor | tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """(B, 2, H, W): x and y coordinates in [-1, 1] (pixel centres).

    ``frame`` (None: ``x`` is the whole image) is where ``x`` lies in a larger LR image:
    ``(y0, x0, H, W)`` in pixels, one for the batch or an int tensor ``(B, 4)`` with one row per
    sample (tiles of one image stacked along the batch). The coordinates are then those of the
    whole image, ``-1 + (2 (y0 + i) + 1) / H``, so a tile gets the channels the same pixels get
    in an untiled run (equal up to float rounding; :func:`tgsr.tiling.tiled_apply` passes them).
    """
    b, _, h, w = x.shape
    if frame is not None:
        f = torch.as_tensor(frame, device=x.device).reshape(-1, 4).to(torch.float32)  # (n, 4)
        if f.shape[0] not in (1, b):
            raise ValueError(f"coord_frame has {f.shape[0]} rows for a batch of {b}")
        i = torch.arange(h, device=x.device, dtype=torch.float32)
        j = torch.arange(w, device=x.device, dtype=torch.float32)
        ys = (2 * (f[:, 0:1] + i) + 1) / f[:, 2:3] - 1  # (n, h)
        xs = (2 * (f[:, 1:2] + j) + 1) / f[:, 3:4] - 1  # (n, w)
        gy = ys[:, :, None].expand(-1, h, w)
        gx = xs[:, None, :].expand(-1, h, w)
        return torch.stack([gx, gy], 1).to(x.dtype).expand(b, -1, -1, -1)  # (B, 2, h, w)
    if torch.onnx.is_in_onnx_export():
        # the exported linspace divides by (steps - 1): a side of 1 pixel came out NaN in the
        # graph; pixel centres as in the frame branch (equal to linspace up to float rounding)
        ys = ((2 * torch.arange(h, device=x.device, dtype=torch.float32) + 1) / h - 1).to(x.dtype)
        xs = ((2 * torch.arange(w, device=x.device, dtype=torch.float32) + 1) / w - 1).to(x.dtype)
    else:  # eager: linspace, byte-identical to what the models were trained with
        ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy]).unsqueeze(0).expand(b, -1, -1, -1)


def subpixel_channels(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 4·log2(factor), H, W): where each pixel lies inside its LR pixel.

    A feature map ``factor`` times the LR size has, at pixel (i, j), the sub-pixel offset
    u = (j mod factor) / factor (and v for rows). It is encoded as sin/cos(2π·m·u) for
    m = 1, 2, 4, ..., factor/2 — the relative coordinates that LIIF / Meta-SR give their
    upsamplers. They depend only on the position modulo the LR grid, so tiling on LR-pixel
    boundaries does not change them. With them a conv can draw detail that is aligned to the
    pixel grid (textures, the benchmark's patterns) without first discovering the phase from
    the transposed-convolution kernels (measured in docs/quickstart.md).
    """
    b, _, h, w = x.shape
    n = int(round(math.log2(factor)))
    if n < 1:
        return x.new_zeros(b, 0, h, w)
    freqs = 2.0 ** torch.arange(n, device=x.device, dtype=torch.float32)  # m = 1, 2, 4, ...
    u = (torch.arange(w, device=x.device) % factor).float().add(0.5) / factor  # (W,)
    v = (torch.arange(h, device=x.device) % factor).float().add(0.5) / factor  # (H,)
    au = 2 * math.pi * freqs[:, None] * u[None]  # (n, W)
    av = 2 * math.pi * freqs[:, None] * v[None]  # (n, H)
    cols = torch.cat([au.sin(), au.cos()])[:, None, :].expand(-1, h, -1)  # (2n, H, W)
    rows = torch.cat([av.sin(), av.cos()])[:, :, None].expand(-1, -1, w)  # (2n, H, W)
    enc = torch.cat([cols, rows]).to(x.dtype)
    return enc.unsqueeze(0).expand(b, -1, -1, -1)


def upsample_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The cheap upsample the image heads predict a residual over (bicubic, align_corners=False)."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)
