"""Inference and training speed against the machine's own limit (a benchmark, never a CI gate).

Random weights throughout (speed does not depend on them). Every section is capped in time and
records its own errors instead of stopping the run; the JSON names the device and versions.

GPU (the sections are capped by ``--budget``, 135 s by default on a GPU; about 150 s in all)::

    PYTHONPATH=src python3 benchmarks/speed.py --device cuda --out speed_h200.json

* ``peak``: the measured bf16 matmul rate (8192³) and a 3×3-conv rate at the generator's width;
* ``infer``: the paper ×8 generator (``cub_x8`` preset, 64 channels) at 256² output, fp32 /
  bf16 / bf16 + channels_last, batch sweep 1, 8, 32, 128, 256, 512 (CUDA-event timing after a
  warm-up, cudnn.benchmark on), images/s and the achieved FLOP rate against the matmul peak
  (FLOPs from ``torch.utils.flop_counter.FlopCounterMode``);
* ``compile``: the same with ``torch.compile`` (bf16 + channels_last), in a child process with
  a hard time limit; a failure is recorded and the run goes on;
* ``train``: images/s of the TGSR training step (generator forward, the preset's losses,
  backward, clip, Adam, EMA; bf16 autocast) for ``cub_x8`` and ``quickstart``.

CPU (``--device cpu``, about 25 min: ``--budget`` 1500 s) adds per-preset rows (params, FLOPs,
fp32 / fp32 + channels_last / bf16 / bf16 + channels_last images/s at 256²), ONNX Runtime,
256² -> 2048² with default settings (wall time, peak RSS, FLOP overhead of the tiling; each run
in a fresh process, median of ``--repeats``), the quickstart's training step and data loader::

    python benchmarks/speed.py --device cpu --out benchmarks/results/speed_cpu.json
    python benchmarks/speed.py --device cpu --sections tiled --repeats 5   # one part only

On a shared machine quote the medians (every figure is one) and rerun on a quiet one.
``--quick`` shrinks every size so the script runs in about a minute (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

# ----------------------------------------------------------------------------- timing


class Deadline:
    """Wall-clock budget of the whole run and of one section."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def sub(self, seconds: float) -> Deadline:
        return Deadline(min(seconds, self.left()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn,
    device: torch.device,
    *,
    warmup: int = 2,
    min_time: float = 0.5,
    min_iters: int = 3,
    max_iters: int = 200,
    deadline: Deadline | None = None,
) -> dict:
    """Median seconds per call of ``fn`` after ``warmup`` calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
        if deadline is not None and deadline.left() <= 0:
            break
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iters:
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        if len(times) >= min_iters and spent >= min_time:
            break
        if deadline is not None and deadline.left() <= 0 and times:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "iters": len(times)}


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ----------------------------------------------------------------------------- environment


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
        env["cpus_available"] = len(os.sched_getaffinity(0))
    except OSError:
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(
            gpu=p.name,
            gpu_memory_gib=round(p.total_memory / 2**30, 1),
            sm_count=p.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            tf32_conv=torch.backends.cudnn.allow_tf32,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


# ----------------------------------------------------------------------------- peaks


def _fast_bf16_cpu() -> bool:
    from tgsr.device import fast_bf16

    return fast_bf16("cpu")


def measure_peaks(device: torch.device, quick: bool, deadline: Deadline) -> dict:
    """Measured matmul and 3×3-conv rates (GFLOP/s): the machine's own limit for this work."""
    out: dict = {}
    if device.type == "cuda":
        n, conv_shape = (1024, (8, 64, 64, 64)) if quick else (8192, (64, 64, 256, 256))
    else:
        n, conv_shape = (256, (1, 64, 32, 32)) if quick else (2048, (1, 64, 256, 256))
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    slow_bf16 = device.type == "cpu" and not _fast_bf16_cpu()
    for name, dt in dtypes.items():
        if deadline.left() <= 0:
            break
        if slow_bf16 and name == "bf16":  # reference kernels: a smaller problem is enough
            n_ = n
            n = min(n, 512)
        try:
            a = torch.randn(n, n, device=device, dtype=dt)
            b = torch.randn(n, n, device=device, dtype=dt)
            t = time_fn(lambda a=a, b=b: a @ b, device, min_time=0.3 if quick else 1.0,
                        warmup=2 if device.type == "cuda" else 1, deadline=deadline)  # fmt: skip
            out[f"matmul_{name}_gflops"] = 2 * n**3 / t["median_s"] / 1e9
            del a, b
        except Exception as exc:  # noqa: BLE001 - recorded
            out[f"matmul_{name}_error"] = _err(exc)
        if slow_bf16 and name == "bf16":
            out["matmul_bf16_n"], n = n, n_
    out["matmul_n"] = n
    b_, c, h, w = conv_shape
    for name, dt in dtypes.items():
        for layout in ("channels_last", "contiguous"):
            if deadline.left() <= 0:
                break
            if device.type == "cuda" and (name, layout) != ("bf16", "channels_last"):
                continue
            try:
                mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                conv = torch.nn.Conv2d(c, c, 3, 1, 1).to(device, dt, memory_format=mf)
                hh, ww = (min(h, 64), min(w, 64)) if (slow_bf16 and name == "bf16") else (h, w)
                x = torch.randn(b_, c, hh, ww, device=device, dtype=dt)
                x = x.contiguous(memory_format=mf)
                with torch.inference_mode():
                    t = time_fn(lambda conv=conv, x=x: conv(x), device,
                                warmup=2 if device.type == "cuda" else 1,
                                min_time=0.3 if quick else 1.0, deadline=deadline)  # fmt: skip
                flops = 2 * b_ * hh * ww * c * c * 9
                out[f"conv3x3_{name}_{layout}_gflops"] = flops / t["median_s"] / 1e9
            except Exception as exc:  # noqa: BLE001
                out[f"conv3x3_{name}_{layout}_error"] = _err(exc)
    out["conv3x3_shape"] = list(conv_shape)
    return out


# ----------------------------------------------------------------------------- models


def build_generator(preset: str, scale: int | None = None, seed: int = 0):
    """The preset's generator with random weights, and the word dimension it reads."""
    from tgsr.config import load_config
    from tgsr.models import build_generator as build

    overrides = [f"data.scale={scale}"] if scale else []
    cfg = load_config(preset, overrides)
    torch.manual_seed(seed)
    word_dim = 2 * cfg.damsm.text_encoder.hidden_dim
    gen = build(cfg, word_dim)
    return gen.eval(), cfg, word_dim


def text_inputs(batch: int, word_dim: int, max_words: int, device, dtype, n_real: int = 8):
    g = torch.Generator().manual_seed(1)
    words = torch.randn(batch, word_dim, max_words, generator=g)
    mask = torch.arange(max_words)[None].expand(batch, -1) >= n_real  # True = padding
    words = words * (~mask)[:, None, :]
    sentence = torch.randn(batch, word_dim, generator=g)
    return (words.to(device, dtype), sentence.to(device, dtype), mask.to(device))


def count_flops(gen, lq_size: int, word_dim: int, max_words: int) -> float:
    """FLOPs of one inference forward pass (``sr_only``, as the pipeline runs it) at batch 1
    (FlopCounterMode, fp32, CPU)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    g = copy.deepcopy(gen).float().cpu()
    lq = torch.rand(1, 3, lq_size, lq_size)
    words, sentence, mask = text_inputs(1, word_dim, max_words, "cpu", torch.float32)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        g(lq, words, sentence, mask, sr_only=True)
    return float(counter.get_total_flops())


VARIANTS = {
    "fp32": (torch.float32, torch.contiguous_format),
    "bf16": (torch.bfloat16, torch.contiguous_format),
    "bf16_channels_last": (torch.bfloat16, torch.channels_last),
    "fp32_channels_last": (torch.float32, torch.channels_last),
}


def prepare(gen, device, dtype, memory_format):
    """A copy of ``gen`` for inference in ``dtype`` / ``memory_format``."""
    import copy

    from tgsr.pipeline import cast_generator

    g = cast_generator(copy.deepcopy(gen).to(device), dtype)
    return g.to(memory_format=memory_format)


def forward_fn(gen, batch: int, lq_size: int, word_dim: int, max_words: int, device, dtype, mf):
    lq = torch.rand(batch, 3, lq_size, lq_size, device=device, dtype=dtype)
    lq = lq.contiguous(memory_format=mf)
    words, sentence, mask = text_inputs(batch, word_dim, max_words, device, dtype)

    def run():  # as the pipeline runs it: only the heads sr needs (sr_only)
        with torch.inference_mode():
            return gen(lq, words, sentence, mask, sr_only=True).sr

    return run


def infer_sweep(
    gen,
    variant: str,
    batches: list[int],
    out_size: int,
    scale: int,
    word_dim: int,
    max_words: int,
    flops: float,
    device,
    deadline: Deadline,
    quick: bool,
    fn_wrap=None,
) -> list[dict]:
    """Images/s per batch size; stops at the first OOM or when the time is up."""
    dtype, mf = VARIANTS[variant]
    lq_size = out_size // scale
    g = prepare(gen, device, dtype, mf)
    rows = []
    for batch in batches:
        if deadline.left() <= 0:
            rows.append({"batch": batch, "skipped": "time budget"})
            break
        try:
            run = forward_fn(g, batch, lq_size, word_dim, max_words, device, dtype, mf)
            if fn_wrap is not None:
                run = fn_wrap(run)
            t = time_fn(run, device, warmup=2 if device.type == "cuda" else 1,
                        min_time=0.1 if quick else 0.5, deadline=deadline)  # fmt: skip
            ips = batch / t["median_s"]
            rows.append({"batch": batch, "median_s": t["median_s"], "iters": t["iters"],
                         "images_per_s": ips, "gflops_per_s": ips * flops / 1e9})  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            rows.append({"batch": batch, "error": _err(exc)})
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if _is_oom(exc) or device.type != "cuda":
                break
    del g
    return rows


# ----------------------------------------------------------------------------- compile


def compile_rows(
    gen,
    batches,
    out_size,
    scale,
    word_dim,
    max_words,
    flops,
    device,
    deadline,
    quick,
    mode,
    rows: list[dict],
    on_row=None,
) -> list[dict]:
    """``torch.compile`` (inductor) of the bf16 + channels_last generator, one compile per
    batch size (``dynamic=False``); rows are appended to ``rows`` as they finish."""
    import torch._dynamo

    dtype, mf = VARIANTS["bf16_channels_last"]
    g = prepare(gen, device, dtype, mf)
    for batch in batches:
        if deadline.left() <= 0:
            rows.append({"batch": batch, "skipped": "time budget"})
            break
        torch._dynamo.reset()
        lq = torch.rand(batch, 3, out_size // scale, out_size // scale, device=device, dtype=dtype)
        lq = lq.contiguous(memory_format=mf)
        words, sentence, mask = text_inputs(batch, word_dim, max_words, device, dtype)

        def sr(lq, words, sentence, mask):
            return g(lq, words, sentence, mask).sr

        try:
            cfn = torch.compile(sr, mode=mode, dynamic=False)
            t0 = time.perf_counter()
            with torch.inference_mode():
                cfn(lq, words, sentence, mask)
            _sync(device)
            compile_s = time.perf_counter() - t0

            def run(cfn=cfn, lq=lq, words=words, sentence=sentence, mask=mask):
                with torch.inference_mode():
                    return cfn(lq, words, sentence, mask)

            t = time_fn(run, device, min_time=0.1 if quick else 0.5, deadline=deadline)
            ips = batch / t["median_s"]
            rows.append({"batch": batch, "mode": mode or "default", "compile_s": compile_s,
                         "median_s": t["median_s"], "images_per_s": ips,
                         "gflops_per_s": ips * flops / 1e9})  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - guard failures, unsupported ops: recorded
            rows.append({"batch": batch, "mode": mode or "default", "error": _err(exc)})
            if _is_oom(exc):
                break
        finally:
            if on_row is not None:
                on_row(rows)
    return rows


def run_child(
    args: argparse.Namespace, section: str, timeout: float, extra: list[str] | None = None
) -> dict:
    """Run one section in a child process with a hard time limit; its JSON comes back."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--device", args.device,
               "--sections", section, "--budget", str(max(timeout - 5, 1)), "--out", str(out),
               "--child"] + (["--quick"] if args.quick else []) + (extra or [])  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        try:
            proc = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
            killed = None
        except subprocess.TimeoutExpired:
            proc, killed = None, f"killed after the {timeout:.0f} s limit of this section"
        result = json.loads(out.read_text()).get(section, {}) if out.is_file() else {}
        if killed:
            result["error"] = killed
        elif not result:
            result = {"error": f"child exited {proc.returncode}: {proc.stderr.strip()[-400:]}"}
        return result


# ----------------------------------------------------------------------------- training


def train_step_fn(preset: str, batch_size: int, device, *, mixed_precision: str = "bf16",
                  channels_last: bool | None = None, seed: int = 0):  # fmt: skip
    """A closure doing one TGSR training step of ``preset`` on a fixed random batch.

    The same sequence as :func:`tgsr.training.trainer.fit`: text features (frozen DAMSM or the
    trained scratch encoder), HR / low-pass pyramids, generator forward, D step (cGAN), the
    preset's generator losses, backward, gradient clip, Adam, EMA. Random DAMSM weights; with no
    torchvision (Inception) the TIC term is dropped and ``notes`` says so. No data loading.
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from tgsr.config import load_config
    from tgsr.data.degradations import build_pyramids, degrade
    from tgsr.losses import LossSuite
    from tgsr.models.discriminator import Discriminator
    from tgsr.models.image_encoder import build_image_encoder
    from tgsr.models.text_encoder import TextEncoder
    from tgsr.training.trainer import _encode, build_generator, conditioning_encoder

    cfg = load_config(preset)
    tc, notes = cfg.train, []
    torch.manual_seed(seed)
    vocab_size = 300
    te = cfg.damsm.text_encoder
    frozen = TextEncoder(te, vocab_size).to(device)
    frozen.eval().requires_grad_(False)
    loss_cfg = cfg.loss
    image_encoder = None
    if loss_cfg.tic > 0:
        try:
            image_encoder = build_image_encoder(cfg.damsm.image_encoder, load_weights=False)
            image_encoder.to(device).eval().requires_grad_(False)
        except ImportError as exc:
            import dataclasses

            notes.append(f"TIC term dropped: {_err(exc)}")
            loss_cfg = dataclasses.replace(loss_cfg, tic=0.0)
    gen = build_generator(cfg, frozen.feature_dim).to(device)
    cl = tc.channels_last if channels_last is None else channels_last
    mf = torch.channels_last if cl else torch.contiguous_format
    gen.to(memory_format=mf)
    cond = conditioning_encoder(tc.text_encoder, frozen, vocab_size, cfg).to(device)
    train_text = tc.text_encoder != "frozen"
    frozen_features = not train_text or loss_cfg.tic > 0 or loss_cfg.cgan > 0
    disc = None
    if loss_cfg.cgan > 0:
        disc = Discriminator(cfg.discriminator, cfg.data.hr_size, cfg.data.scale,
                             sentence_dim=frozen.feature_dim)  # fmt: skip
        disc.to(device, memory_format=mf).train()
        opt_d = torch.optim.Adam(disc.parameters(), lr=tc.d_lr, betas=tuple(tc.betas), foreach=True)
    suite = LossSuite(loss_cfg, cfg.generator, cfg.damsm, degradation=cfg.data.degradation)
    g_params = list(gen.parameters()) + (list(cond.parameters()) if train_text else [])
    opt_g = torch.optim.Adam(g_params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps,
                             foreach=True)  # as the trainer  # fmt: skip
    ema = AveragedModel(gen, multi_avg_fn=get_ema_multi_avg_fn(tc.ema_decay), use_buffers=True)
    gen.train()
    hr = cfg.data.hr_size
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch_size, 3, hr, hr, generator=g)
    lq = degrade(gt, cfg.data.scale, cfg.data.degradation).clamp(0, 1)
    t = cfg.data.max_words
    lengths = torch.randint(3, t + 1, (batch_size,), generator=g)
    tokens = torch.randint(1, vocab_size, (batch_size, t), generator=g)
    tokens = tokens * (torch.arange(t)[None] < lengths[:, None])
    batch = {"gt": gt.to(device).contiguous(memory_format=mf),
             "lq": lq.to(device).contiguous(memory_format=mf),
             "tokens": tokens.to(device), "length": lengths.to(device),
             "class_id": torch.arange(batch_size, device=device)}  # fmt: skip
    use_amp = mixed_precision != "no"
    amp_dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp)

    def step():
        text = None
        if frozen_features:
            with torch.no_grad():
                text = frozen.encode(batch["tokens"], batch["length"])
        c = _encode(cond, batch) if train_text else text
        text = c if text is None else text
        with torch.no_grad():
            gt_levels, lp_levels = build_pyramids(
                batch["gt"], cfg.data.scale, cfg.data.lowpass_sigma, cfg.data.degradation
            )
        with autocast():
            out = gen(batch["lq"], c.words, c.sentence, c.token_mask)
        if disc is not None:
            with autocast():
                d_loss, _ = suite.discriminator_loss(out, batch, text, disc)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), tc.grad_clip)
            opt_d.step()
        with autocast():
            g_loss, _ = suite.generator_loss(
                out, batch, gt_levels, lp_levels, text,
                damsm_image_encoder=image_encoder, discriminator=disc,
            )  # fmt: skip
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(g_params, tc.grad_clip)
        opt_g.step()
        ema.update_parameters(gen)

    info = {"preset": preset, "batch": batch_size, "hr": hr, "mixed_precision": mixed_precision,
            "channels_last": cl, "losses": suite.terms, "notes": notes}  # fmt: skip
    return step, info


def train_rows(presets_batches, device, deadline: Deadline, quick: bool, **kw) -> list[dict]:
    rows = []
    for preset, batch in presets_batches:
        if deadline.left() <= 0:
            rows.append({"preset": preset, "batch": batch, "skipped": "time budget"})
            continue
        try:
            step, info = train_step_fn(preset, batch, device, **kw)
            min_time = 0.2 if quick else (1.0 if device.type == "cuda" else 3.0)
            t = time_fn(step, device, warmup=2, min_time=min_time, min_iters=3,
                        deadline=deadline)  # fmt: skip
            rows.append({**info, "median_s": t["median_s"], "iters": t["iters"],
                         "steps_per_s": 1 / t["median_s"],
                         "images_per_s": batch / t["median_s"]})  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            rows.append({"preset": preset, "batch": batch, "error": _err(exc)})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------- sections


def section_infer(args, device, deadline: Deadline, quick: bool) -> dict:
    preset = "cub_x8"
    gen, cfg, word_dim = build_generator(preset)
    scale, max_words = cfg.data.scale, cfg.data.max_words
    out_size = 32 if quick else 256
    flops = count_flops(gen, out_size // scale, word_dim, max_words)
    params = sum(p.numel() for p in gen.parameters())
    if device.type == "cuda":  # the fastest variant first, with the widest sweep
        variants = {"bf16_channels_last": [1, 8, 32, 128, 256, 512, 1024],
                    "bf16": [1, 32, 256], "fp32": [1, 32, 256]}  # fmt: skip
        if quick:
            variants = {v: [1, 8] for v in variants}
    else:
        from tgsr.device import fast_bf16

        # without AMX / AVX-512-BF16, bf16 runs on slow reference kernels: a shorter sweep
        low = [1, 8, 32] if fast_bf16("cpu") else [1]
        variants = {"fp32": [1, 8, 32], "fp32_channels_last": [1, 8, 32], "bf16": low,
                    "bf16_channels_last": low}  # fmt: skip
        if quick:
            variants = {v: [1, 2] for v in variants}
    res = {"preset": preset, "scale": scale, "channels": cfg.generator.channels,
           "params": params, "output": out_size, "flops_per_image": flops, "variants": {}}  # fmt: skip
    weights = {v: len(b) for v, b in variants.items()}
    for i, (v, batches) in enumerate(variants.items()):
        rest = sum(list(weights.values())[i:])
        sub = deadline.sub(max(deadline.left(), 0) * weights[v] / rest)
        res["variants"][v] = infer_sweep(
            gen, v, batches, out_size, scale, word_dim, max_words, flops, device, sub, quick
        )
    return res


def section_compile(args, device, deadline: Deadline, quick: bool) -> dict:
    gen, cfg, word_dim = build_generator("cub_x8")
    scale, max_words = cfg.data.scale, cfg.data.max_words
    out_size = 32 if quick else 256
    flops = count_flops(gen, out_size // scale, word_dim, max_words)
    if device.type == "cuda":  # (batch, mode): the big batch first, CUDA graphs for a small one
        jobs = [(8, None)] if quick else [(256, None), (512, None), (32, "reduce-overhead")]
    else:
        jobs = [(1, None)] if quick else [(1, None), (8, None)]
    rows: list[dict] = []

    def save(rows):  # a child killed at its time limit still hands back the finished rows
        if args.out is not None and args.child:
            args.out.write_text(json.dumps({"compile": {"variant": "bf16_channels_last",
                                                        "rows": rows}}))  # fmt: skip

    for batch, mode in jobs:
        compile_rows(gen, [batch], out_size, scale, word_dim, max_words, flops, device,
                     deadline, quick, mode, rows, save)  # fmt: skip
    return {"variant": "bf16_channels_last", "rows": rows}


def section_train(args, device, deadline: Deadline, quick: bool) -> dict:
    if quick:
        jobs = [("quickstart", 2)]
    elif device.type == "cuda":
        jobs = [("cub_x8", 16), ("cub_x8", 64), ("quickstart", 16), ("quickstart", 256)]
    else:  # the preset's bf16 autocast and float32 (what the trainer uses without fast bf16)
        rows = train_rows([("quickstart", 16)], device, deadline, quick)
        rows += train_rows([("quickstart", 16)], device, deadline, quick, mixed_precision="no")
        return {"rows": rows}
    return {"rows": train_rows(jobs, device, deadline, quick)}


def section_profile(args, device, deadline: Deadline, quick: bool) -> dict:
    """Where the time of one bf16 + channels_last forward goes: the top operators by device
    time (torch.profiler), and a 6×6/2 transposed conv against the equivalent 3×3 conv to 4C
    channels + pixel shuffle (same FLOPs)."""
    from torch.profiler import ProfilerActivity, profile

    gen, cfg, word_dim = build_generator("cub_x8")
    scale, max_words = cfg.data.scale, cfg.data.max_words
    out_size = 32 if quick else 256
    batch = 2 if quick else (256 if device.type == "cuda" else 8)
    dtype, mf = VARIANTS["bf16_channels_last"]
    g = prepare(gen, device, dtype, mf)
    run = forward_fn(g, batch, out_size // scale, word_dim, max_words, device, dtype, mf)
    for _ in range(2):
        run()
    _sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        run()
        _sync(device)
    key = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    events = prof.key_averages()
    total = sum(getattr(e, "self_" + key, 0) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, "self_" + key, 0), reverse=True)[:20]
    rows = [{"op": e.key, "self_ms": getattr(e, "self_" + key, 0) / 1000, "calls": e.count,
             "share": getattr(e, "self_" + key, 0) / total} for e in top]  # fmt: skip
    res = {"batch": batch, "output": out_size, "time_key": "self_" + key, "top_ops": rows}
    c, hw = cfg.generator.channels, (4 if quick else 64)
    nb = 2 if quick else (64 if device.type == "cuda" else 1)
    x = torch.randn(nb, c, hw, hw, device=device, dtype=dtype).contiguous(memory_format=mf)
    de = torch.nn.ConvTranspose2d(c, c, 6, 2, 2).to(device, dtype, memory_format=mf)
    cv = torch.nn.Conv2d(c, 4 * c, 3, 1, 1).to(device, dtype, memory_format=mf)
    ps = torch.nn.PixelShuffle(2)
    with torch.inference_mode():
        flops = 2 * nb * hw * hw * 36 * c * c
        for name, fn in (("deconv6x6s2", lambda: de(x)), ("conv3x3_4c_pixelshuffle",
                                                         lambda: ps(cv(x)))):  # fmt: skip
            if deadline.left() <= 0:
                break
            t = time_fn(fn, device, min_time=0.3, deadline=deadline)
            res[f"{name}_gflops"] = flops / t["median_s"] / 1e9
    return res


def make_pipeline(preset: str, seed: int = 0):
    """A TGSRPipeline of ``preset`` with random weights (generator + its text encoder)."""
    from dataclasses import replace

    from tgsr.config import load_config
    from tgsr.models import TextEncoder
    from tgsr.models import build_generator as build
    from tgsr.pipeline import PipelineInfo, TGSRPipeline
    from tgsr.text import Vocabulary

    cfg = load_config(preset)
    torch.manual_seed(seed)
    te = cfg.damsm.text_encoder
    emb = cfg.train.scratch_embedding_dim if cfg.train.text_encoder == "scratch" else None
    vocab = Vocabulary.build(["a red and cyan striped circle on the left of a small bird"])
    text_encoder = TextEncoder(replace(te, embedding_dim=emb or te.embedding_dim, dropout=0.0),
                               len(vocab))  # fmt: skip
    generator = build(cfg, 2 * te.hidden_dim)
    info = PipelineInfo(scale=cfg.data.scale, lq_size=cfg.data.hr_size // cfg.data.scale,
                        max_words=cfg.data.max_words, use_text=cfg.generator.use_text)  # fmt: skip
    return TGSRPipeline(generator, text_encoder if info.use_text else None,
                        vocab if info.use_text else None, info)  # fmt: skip


def tiled_once(preset: str, lq_size: int) -> dict:
    """One default-settings upscale of a random ``lq_size``² image (run in a fresh process for
    its own peak RSS): the pipeline is saved and loaded with ``from_pretrained(dir)`` (dtype
    auto, default memory budget), then ``pipe(image, caption, output_type="np")`` as
    ``tgsr upscale`` calls it."""
    import tempfile

    import numpy as np

    from tgsr.pipeline import TGSRPipeline

    def hwm_mb() -> float:  # this process's peak RSS (VmHWM; ru_maxrss survives fork + exec)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    with tempfile.TemporaryDirectory() as tmp:
        make_pipeline(preset).save_pretrained(tmp)
        pipe = TGSRPipeline.from_pretrained(tmp)
    image = np.random.default_rng(0).integers(0, 256, (lq_size, lq_size, 3), dtype=np.uint8)
    caption = "a red and cyan striped circle on the left"
    rss0 = hwm_mb()
    t0 = time.perf_counter()
    plan = pipe._plan(1, lq_size, lq_size, None, None, None)
    plan_s = time.perf_counter() - t0
    out = pipe(image, caption, output_type="np")
    seconds = time.perf_counter() - t0
    rss = hwm_mb()
    return {"preset": preset, "lq": lq_size, "output": list(out.images[0].shape[:2]),
            "dtype": str(pipe.dtype).removeprefix("torch."), "seconds": seconds,
            "plan_seconds": plan_s, "tiled": out.tiled,
            "tile": None if plan is None else plan.tile,
            "overlap": None if plan is None else plan.overlap,
            "batch_tiles": None if plan is None else plan.batch_tiles,
            "flops_overhead": 1.0 if plan is None else plan.overhead,
            "receptive_radius": pipe._radius, "peak_rss_mb": rss,
            "rss_before_mb": rss0}  # fmt: skip


def section_tiled(args, device, deadline: Deadline, quick: bool) -> dict:
    """256² -> 2048² (×8) with default settings, per preset, each in a fresh process; the
    median of ``--repeats`` runs."""
    lq = 32 if quick else 256
    rows = []
    for preset in ["quickstart"] if quick else ["cub_x8", "quickstart"]:
        runs = []
        for _ in range(args.repeats):
            if deadline.left() <= 0:
                break
            res = run_child(args, "tiled_one", deadline.left(), extra=["--preset", preset,
                                                                        "--lq", str(lq)])  # fmt: skip
            runs.append(res)
            if "error" in res:
                break
        ok = [r for r in runs if "seconds" in r]
        row = {"preset": preset, "runs": runs}
        if ok:
            row["median_seconds"] = statistics.median(r["seconds"] for r in ok)
            row["median_peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in ok)
        rows.append(row)
    return {"rows": rows}


def section_guard(args, device, deadline: Deadline, quick: bool) -> dict:
    """The LR guard's cost after the generator (``tgsr.lr_guard.lr_guard``, float32 on the CPU
    as the pipeline runs it) on one ×8 output of a ``256``² input (2048²): an output already
    within 40 dB of its input (checked only) and one 0.03 off in every pixel (≈ 30 dB: pulled,
    back-projection and bisection). The median of ``--repeats`` calls each."""
    from tgsr.data.degradations import imresize
    from tgsr.evaluation.metrics import lr_psnr
    from tgsr.lr_guard import back_project, lr_guard

    lq_size, scale, bound = (32 if quick else 256), 8, 40.0
    gen = torch.Generator().manual_seed(0)
    lq = imresize(torch.rand(1, 3, lq_size // 8, lq_size // 8, generator=gen), 8).clamp(0, 1)
    within = back_project(imresize(lq, scale).clamp(0, 1), lq, scale, until=50.0)
    rows = []
    for case, sr in (("within", within), ("strayed", (within + 0.03).clamp(0, 1))):
        times = []
        for _ in range(max(1, args.repeats)):
            if deadline.left() <= 0 and times:
                break
            t0 = time.perf_counter()
            out, alpha = lr_guard(sr, lq, scale, bound)
            times.append(time.perf_counter() - t0)
        rows.append({"case": case, "output": list(out.shape[-2:]), "bound_db": bound,
                     "lr_psnr_before": float(lr_psnr(sr, lq, scale)),
                     "lr_psnr_after": float(lr_psnr(out, lq, scale)), "alpha": float(alpha[0]),
                     "median_seconds": statistics.median(times), "runs": len(times)})  # fmt: skip
    return {"rows": rows, "threads": torch.get_num_threads()}


def section_onnx(args, device, deadline: Deadline, quick: bool) -> dict:
    """ONNX Runtime (CPU, float32) latency of the paper ×8 generator at 256² output."""
    import tempfile

    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"error": _err(exc)}
    from tgsr.export import export_onnx

    pipe = make_pipeline("cub_x8")
    out_size = 32 if quick else 256
    flops = count_flops(pipe.generator, out_size // 8, 256, pipe.max_words)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(pipe, tmp)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(Path(tmp) / "generator.onnx"), opts,
                                    providers=["CPUExecutionProvider"])  # fmt: skip
        names = [i.name for i in sess.get_inputs()]
        for batch in [1, 2] if quick else [1, 8]:
            if deadline.left() <= 0:
                rows.append({"batch": batch, "skipped": "time budget"})
                break
            words, sentence, mask = text_inputs(batch, 256, pipe.max_words, "cpu", torch.float32)
            feed = {"lq": np.random.rand(batch, 3, out_size // 8, out_size // 8).astype("float32"),
                    "words": words.numpy(), "token_mask": mask.numpy(),
                    "sentence": sentence.numpy()}  # fmt: skip
            feed = {k: v for k, v in feed.items() if k in names}
            t = time_fn(lambda feed=feed: sess.run(["sr"], feed), device,
                        min_time=0.1 if quick else 1.0, deadline=deadline)  # fmt: skip
            ips = batch / t["median_s"]
            rows.append({"batch": batch, "median_s": t["median_s"], "images_per_s": ips,
                         "gflops_per_s": ips * flops / 1e9})  # fmt: skip
    return {"preset": "cub_x8", "output": out_size, "flops_per_image": flops, "rows": rows}


def section_presets(args, device, deadline: Deadline, quick: bool) -> dict:
    """Per preset and scale: params, FLOPs per 256² output, fp32 / bf16 / bf16+channels_last
    images/s at batch 1 (the paper ×8 model's sweep is in ``infer``)."""
    presets = ["quickstart"] if quick else ["cub_x4", "cub_x8", "cub_x16", "quickstart",
                                            "celeba_attr_released_x8"]  # fmt: skip
    out_size = 32 if quick else 256
    rows = []
    for preset in presets:
        gen, cfg, word_dim = build_generator(preset)
        scale, t = cfg.data.scale, cfg.data.max_words
        flops = count_flops(gen, out_size // scale, word_dim, t)
        row = {"preset": preset, "scale": scale, "arch": cfg.generator.arch,
               "channels": cfg.generator.channels,
               "params": sum(p.numel() for p in gen.parameters()), "flops_per_image": flops}  # fmt: skip
        for v in ("fp32", "fp32_channels_last", "bf16", "bf16_channels_last"):
            if deadline.left() <= 0:
                row[v] = {"skipped": "time budget"}
                continue
            if v.startswith("bf16") and device.type == "cpu" and not quick:
                if not _fast_bf16_cpu():
                    row[v] = {"skipped": "no AMX / AVX-512-BF16: reference kernels (see peak)"}
                    continue
            sweep = infer_sweep(gen, v, [1], out_size, scale, word_dim, t, flops, device,
                                deadline, quick)  # fmt: skip
            row[v] = sweep[0]
        rows.append(row)
    return {"output": out_size, "rows": rows}


def section_loader(args, device, deadline: Deadline, quick: bool) -> dict:
    """Images/s of the quickstart's training data loader (synthetic scenes rendered on the fly,
    ``data.num_workers`` worker processes as configured)."""
    from tgsr.config import load_config
    from tgsr.data.loader import build_vocabulary
    from tgsr.training.common import train_loader

    cfg = load_config("quickstart")
    vocab = build_vocabulary(cfg.data)
    loader = train_loader(cfg.data, vocab, cfg.train.batch_size, "train.batch_size")
    it = iter(loader)
    next(it)  # workers started, first batch
    n, t0 = 0, time.perf_counter()
    limit = 3 if quick else 40
    while n < limit and deadline.left() > 0:
        batch = next(it)
        n += 1
    seconds = time.perf_counter() - t0
    bs = batch["gt"].shape[0]
    return {"preset": "quickstart", "batch": bs, "batches": n, "num_workers": cfg.data.num_workers,
            "images_per_s": n * bs / seconds}  # fmt: skip


SECTIONS = {
    "peak": lambda a, d, dl, q: measure_peaks(d, q, dl),
    "infer": section_infer,
    "profile": section_profile,
    "compile": section_compile,
    "train": section_train,
    "presets": section_presets,
    "onnx": section_onnx,
    "tiled": section_tiled,
    "guard": section_guard,
    "loader": section_loader,
    "tiled_one": lambda a, d, dl, q: tiled_once(a.preset, a.lq),
}
# share of the budget per section
SHARES = {"peak": 0.06, "infer": 0.32, "profile": 0.04, "compile": 0.38, "train": 0.2,
          "presets": 0.2, "onnx": 0.08, "tiled": 0.3, "guard": 0.03, "loader": 0.05, "tiled_one": 1.0}  # fmt: skip
DEFAULT_SECTIONS = {
    "cuda": "peak,infer,profile,compile,train",
    "cpu": "peak,infer,presets,onnx,tiled,guard,train,loader,profile,compile",
}


def summarise(result: dict) -> dict:
    """Best images/s per variant and the ratio of its FLOP rate to the measured peaks."""
    peak = result.get("peak", {})
    infer = result.get("infer", {})
    flops = infer.get("flops_per_image")
    rows = {k: v for k, v in infer.get("variants", {}).items()}
    comp = [r for r in result.get("compile", {}).get("rows", []) if "images_per_s" in r]
    if comp:
        rows["compile_bf16_channels_last"] = comp
    out = {}
    for name, rs in rows.items():
        ok = [r for r in rs if "images_per_s" in r]
        if not ok or not flops:
            continue
        best = max(ok, key=lambda r: r["images_per_s"])
        entry = {"images_per_s": best["images_per_s"], "batch": best["batch"],
                 "tflops_per_s": best["images_per_s"] * flops / 1e12}  # fmt: skip
        rate = best["images_per_s"] * flops / 1e9
        dt = "fp32" if name.startswith("fp32") else "bf16"
        if peak.get(f"matmul_{dt}_gflops"):
            entry[f"ratio_to_matmul_{dt}"] = rate / peak[f"matmul_{dt}_gflops"]
        convs = [v for k, v in peak.items() if k.startswith(f"conv3x3_{dt}_") and "gflops" in k]
        if convs:
            entry[f"ratio_to_conv3x3_{dt}"] = rate / max(convs)
        out[name] = entry
    for row in result.get("tiled", {}).get("rows", []):
        if "median_seconds" in row:
            ok = [r for r in row["runs"] if "seconds" in r]
            out[f"tiled_2048_{row['preset']}"] = {
                "median_seconds": row["median_seconds"],
                "median_peak_rss_mb": row["median_peak_rss_mb"],
                "flops_overhead": ok[0]["flops_overhead"], "dtype": ok[0]["dtype"],
            }  # fmt: skip
    for row in result.get("guard", {}).get("rows", []):
        out[f"lr_guard_{row['output'][0]}_{row['case']}"] = {
            "median_seconds": row["median_seconds"]
        }
    for row in result.get("train", {}).get("rows", []):
        if "images_per_s" in row:
            key = f"train_{row['preset']}_b{row['batch']}_{row['mixed_precision']}"
            out[key] = {"steps_per_s": row["steps_per_s"], "images_per_s": row["images_per_s"]}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="JSON file to write")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the sections (default: 135 on cuda, 1500 on cpu)")  # fmt: skip
    p.add_argument("--sections", default=None, help="default: every section of the device")
    p.add_argument("--repeats", type=int, default=3, help="tiled runs per preset (median)")
    p.add_argument("--preset", default="cub_x8", help=argparse.SUPPRESS)
    p.add_argument("--lq", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.budget is None:
        args.budget = 135.0 if device.type == "cuda" else 1500.0
    deadline = Deadline(args.budget)
    if args.sections is None:
        args.sections = DEFAULT_SECTIONS["cuda" if device.type == "cuda" else "cpu"]
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; known: {sorted(SECTIONS)}")
    result: dict = {"env": environment(device), "budget_s": args.budget}
    t_start = time.perf_counter()
    for i, name in enumerate(sections):
        rest = sum(SHARES[s] for s in sections[i:])
        seconds = deadline.left() * SHARES[name] / rest if rest else 0
        t0 = time.perf_counter()
        if name in ("compile",) and not args.child:
            result[name] = run_child(args, name, max(seconds, 1))
        else:
            try:
                result[name] = SECTIONS[name](args, device, deadline.sub(seconds), args.quick)
            except Exception as exc:  # noqa: BLE001 - one section's failure is recorded
                result[name] = {"error": _err(exc), "traceback": traceback.format_exc()[-2000:]}
        result[name + "_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[speed] {name}: {result[name + '_seconds']} s", file=sys.stderr, flush=True)
        if args.out and not args.child:  # a run killed from outside keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    if not args.child:
        result["summary"] = summarise(result)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if not args.child:
        print(json.dumps(result.get("summary", {}), indent=2))


if __name__ == "__main__":
    main()
