"""Which number format is fast where: bf16 only on GPUs with native bf16 and CPUs whose oneDNN
has bf16 kernels (AMX or AVX-512-BF16). Used by inference (``dtype="auto"``) and by training
(``mixed_precision: bf16`` falls back to float32 on other CPUs)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy
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


def effective_num_workers(num_workers: int) -> int:
    """``data.num_workers`` as configured, except 0 (load in the training process) when training
    runs on the CPU and torch's threads already fill every core it may use. A loader process then
    competes with those threads, and each parallel region waits for the thread it preempted: on a
    2-core AVX2 machine the quickstart's real training loop ran as fast in-process on a quiet
    machine (no-text baseline: 7 % faster) and up to 1.8x faster on a busy one
    (benchmarks/cpu_step_profile.py --mode fit). The batches are the same either way (the order
    and the caption draws do not depend on where they are made), so the results are too."""

    if num_workers == 0 or torch.cuda.is_available():
        return num_workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if torch.get_num_threads() >= (cores or 1) else num_workers


def environment(device: str | torch.device = "cpu") -> dict:
    """Where a measurement ran, for benchmark JSON: ``{"device": {...}, "versions": {...}}`` (device
    kind, GPU or CPU model, CPU capability, cores, threads, platform; python, torch, numpy,
    torchvision when installed, and the git commit of the checkout this package runs from)."""
    import os

    device = torch.device(device)
    info = {"device": device.type, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}  # fmt: skip
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                platform.processor(),
            )
    except OSError:
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:  # optional here (a GPU box may lack it)
        import torchvision

        tv = torchvision.__version__
    except ImportError:
        tv = None
    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent,
                                capture_output=True).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": tv, "numpy": numpy.__version__, "git_commit": commit}  # fmt: skip
    return {"device": info, "versions": versions}
