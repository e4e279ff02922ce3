"""Which number format is fast where: bf16 only on GPUs with native bf16 and CPUs whose oneDNN
has bf16 kernels (AMX or AVX-512-BF16). Used by inference (``dtype="auto"``) and by training
(``mixed_precision: bf16`` falls back to float32 on other CPUs)."""

from __future__ import annotations

import torch


def fast_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 inference is faster than float32 on ``device``: a CUDA GPU with native bf16,
    or a CPU whose oneDNN has bf16 kernels (AMX or AVX-512-BF16). Elsewhere (e.g. AVX2 CPUs) bf16
    convolutions fall back to slow reference kernels, several times slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # pragma: no cover - older torch
            return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    flags = [
        getattr(cpu, name, lambda: False)()
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    mkldnn_bf16 = False
    if torch.backends.mkldnn.is_available():
        try:
            mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - torch without the op
            mkldnn_bf16 = False
    return any(flags) and mkldnn_bf16


def effective_mixed_precision(mode: str, cpu: bool | None) -> str:
    """``mixed_precision`` as configured, except bf16 on a CPU without fast bf16 kernels: bf16
    convolutions run on reference kernels there (the quickstart step: 24.9 s instead of 4.3 s in
    float32 on a 2-core AVX2 machine, benchmarks/speed.py), so training runs in float32."""
    on_cpu = bool(cpu) or not torch.cuda.is_available()
    if mode == "bf16" and on_cpu and not fast_bf16("cpu"):
        return "no"
    return mode
