"""Where the time of one CPU training step goes, and which CPU settings make it faster (a
benchmark, never a CI gate).

One TGSR training step of a preset (default: the quickstart's, batch 16, 64² HR, ×8) on a fixed
batch of real training samples, in the trainer's order: conditioning text encoder, HR /
low-pass pyramids, generator forward, the preset's losses, backward, gradient clip, Adam (+ the
warm-up schedule), EMA. No DataLoader and no accelerate wrapper (``--mode fit`` has both).

Modes::

    # per-phase wall time of VARIANTS side by side, their steps interleaved A B A B ... in one
    # process (a busy machine slows all of them alike; quote the per-pair ratios)
    python benchmarks/cpu_step_profile.py --mode step --variants default,cl_off,threads1

    # top operators by self CPU time, per phase (torch.profiler)
    python benchmarks/cpu_step_profile.py --mode profile --variants default

    # the real tgsr.training.trainer.fit loop (DataLoader, accelerate, logging, checkpoints):
    # median seconds between steps, one variant per process
    python benchmarks/cpu_step_profile.py --mode fit --variants default --steps 40

A variant is ``default`` (the preset as the trainer runs it here: ``channels_last: auto`` and
``mixed_precision`` resolved for this CPU by :mod:`tgsr.device`) or a ``+``-joined list of
changes: ``cl_on`` / ``cl_off`` (channels_last), ``threadsN`` (torch intra-op threads),
``fp32`` / ``bf16`` (autocast), ``workersN`` (``--mode fit`` only), ``compile`` (the generator
through ``torch.compile``; step mode). ``--out`` writes a JSON with the device, the versions and
the load average before and after (how busy the machine was).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

PHASES = ("text", "pyramids", "forward", "loss", "backward", "clip", "optimizer", "ema")


# ----------------------------------------------------------------------------- environment
def cpu_flags() -> dict:
    flags = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    return {"cpu": model, **{f: f in flags for f in wanted}}


def environment() -> dict:
    from tgsr.device import fast_bf16

    return {
        **cpu_flags(),
        "device": "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "fast_bf16": fast_bf16("cpu"),
        "cpus_available": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ----------------------------------------------------------------------------- variants
def parse_variant(name: str) -> dict:
    """``default`` or ``cl_off+threads1+...`` -> the settings it changes."""
    out: dict = {}
    for part in name.split("+"):
        if part == "default":
            continue
        if part in ("cl_on", "cl_off"):
            out["channels_last"] = part == "cl_on"
        elif part.startswith("threads"):
            out["threads"] = int(part[7:])
        elif part.startswith("workers"):
            out["num_workers"] = int(part[7:])
        elif part in ("fp32", "bf16"):
            out["mixed_precision"] = "no" if part == "fp32" else "bf16"
        elif part == "compile":
            out["compile"] = True
        else:
            raise SystemExit(f"unknown variant part {part!r} in {name!r}")
    return out


def resolved(cfg, changes: dict) -> dict:
    """What the trainer would run with on this machine, after ``changes``."""
    from tgsr.device import effective_mixed_precision, effective_num_workers

    mp = changes.get("mixed_precision", cfg.train.mixed_precision)
    mp = effective_mixed_precision(mp, cpu=True) if "mixed_precision" not in changes else mp
    cl = changes.get("channels_last", cfg.train.channels_last)
    if cl not in (True, False):
        from tgsr.device import effective_channels_last

        cl = effective_channels_last(cl, mp, cpu=True)
    return {"mixed_precision": mp, "channels_last": bool(cl),
            "threads": changes.get("threads", torch.get_num_threads()),
            "num_workers": changes.get("num_workers", effective_num_workers(cfg.data.num_workers)),
            "compile": changes.get("compile", False)}  # fmt: skip


# ----------------------------------------------------------------------------- one step
class Step:
    """One training step of ``cfg`` with ``settings`` (see :func:`resolved`) on ``batch``;
    ``__call__`` returns the wall seconds of each phase."""

    def __init__(self, cfg, settings: dict, batch: dict, vocab_size: int, seed: int = 0):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        from tgsr.losses import LossSuite
        from tgsr.models import build_generator
        from tgsr.training.damsm import build_damsm_modules
        from tgsr.training.trainer import conditioning_encoder

        self.cfg, self.settings = cfg, settings
        self.mf = torch.channels_last if settings["channels_last"] else torch.contiguous_format
        torch.manual_seed(seed)
        frozen, _ = build_damsm_modules(cfg, vocab_size)  # random weights: speed only
        self.frozen = frozen.eval().requires_grad_(False)
        self.generator = build_generator(cfg, frozen.feature_dim).to(memory_format=self.mf)
        self.generator.train()
        # as the trainer: no text encoder runs for a generator without text (the baseline)
        self.use_text = cfg.generator.use_text
        self.train_text = self.use_text and cfg.train.text_encoder != "frozen"
        self.cond = conditioning_encoder(cfg.train.text_encoder, frozen, vocab_size, cfg)
        if cfg.loss.tic > 0 or cfg.loss.cgan > 0:
            raise SystemExit("this benchmark covers presets without TIC / cGAN")
        self.suite = LossSuite(cfg.loss, cfg.generator, cfg.damsm, degradation=cfg.data.degradation)
        tc = cfg.train
        self.params = list(self.generator.parameters())
        if self.train_text:
            self.params += list(self.cond.parameters())
        self.opt = torch.optim.Adam(self.params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps,
                                    weight_decay=tc.weight_decay, foreach=True)  # fmt: skip
        warmup = max(tc.warmup_steps, 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warmup)
        )
        avg = get_ema_multi_avg_fn(tc.ema_decay)
        self.ema = AveragedModel(self.generator, multi_avg_fn=avg, use_buffers=True)
        self.text_ema = AveragedModel(self.cond, multi_avg_fn=avg) if self.train_text else None
        self.batch = {k: (v.contiguous(memory_format=self.mf) if torch.is_tensor(v) and v.dim() == 4
                          else v) for k, v in batch.items()}  # fmt: skip
        self.forward = self.generator
        if settings["compile"]:
            self.forward = torch.compile(self.generator)
        mp = settings["mixed_precision"]
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mp == "bf16" \
            else nullcontext  # fmt: skip

    def __call__(self, record=nullcontext) -> dict[str, float]:
        from tgsr.data.degradations import build_pyramids
        from tgsr.models import token_mask_from_lengths

        torch.set_num_threads(self.settings["threads"])
        b, d, times = self.batch, self.cfg.data, {}
        clock = time.perf_counter

        def lap(name, t0):
            times[name] = clock() - t0
            return clock()

        t = clock()
        with record("text"):
            words = sentence = None
            if self.train_text:
                words, sentence = self.cond(b["tokens"], b["length"])
            elif self.use_text:
                with torch.no_grad():
                    words, sentence = self.frozen(b["tokens"], b["length"])
            mask = token_mask_from_lengths(b["length"], b["tokens"].shape[1])
        t = lap("text", t)
        with record("pyramids"), torch.no_grad():
            gt_levels, lp_levels = build_pyramids(b["gt"], d.scale, d.lowpass_sigma, d.degradation)
        t = lap("pyramids", t)
        with record("forward"), self.autocast():
            out = self.forward(b["lq"], words, sentence, mask)
        t = lap("forward", t)
        from tgsr.models import TextFeatures

        text = TextFeatures(words, sentence, mask)
        with record("loss"), self.autocast():
            loss, _ = self.suite.generator_loss(out, b, gt_levels, lp_levels, text,
                                                damsm_image_encoder=None, discriminator=None,
                                                step=1)  # fmt: skip
        t = lap("loss", t)
        with record("backward"):
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        t = lap("backward", t)
        with record("clip"):
            if self.cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        t = lap("clip", t)
        with record("optimizer"):
            self.opt.step()
            self.sched.step()
        t = lap("optimizer", t)
        with record("ema"):
            self.ema.update_parameters(self.generator)
            if self.text_ema is not None:
                self.text_ema.update_parameters(self.cond)
        lap("ema", t)
        return times


def real_batch(cfg, batch_size: int):
    """A batch of real training samples (rendered scenes for ShapeCaps) and the vocabulary size."""
    from torch.utils.data import DataLoader

    from tgsr.data.loader import build_dataset, build_vocabulary

    vocab = build_vocabulary(cfg.data)
    dataset = build_dataset(cfg.data, vocab, train=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    return next(iter(loader)), len(vocab)


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def mode_step(cfg, names: list[str], args) -> dict:
    batch, vocab_size = real_batch(cfg, args.batch)
    steps = {}
    for name in names:
        settings = resolved(cfg, parse_variant(name))
        t0 = time.perf_counter()
        steps[name] = Step(cfg, settings, batch, vocab_size, seed=args.seed)
        for _ in range(args.warmup):
            steps[name]()
        steps[name].setup_s = time.perf_counter() - t0
    times: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.steps):  # interleaved: A B C A B C ...
        for name in names:
            times[name].append(steps[name]())
    rows = []
    base = [sum(t.values()) for t in times[names[0]]]
    for name in names:
        totals = [sum(t.values()) for t in times[name]]
        phases = {p: statistics.median(t[p] for t in times[name]) for p in PHASES}
        med = statistics.median(totals)
        rows.append({
            "variant": name, "settings": steps[name].settings,
            "step_s": summarise(totals), "steps_per_min": 60 / med,
            "phases_median_s": phases,
            "ratio_to_first": summarise([a / b for a, b in zip(totals, base, strict=True)]),
            "warmup_and_setup_s": steps[name].setup_s,
        })  # fmt: skip
    return {"rows": rows}


def mode_profile(cfg, names: list[str], args) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function

    batch, vocab_size = real_batch(cfg, args.batch)
    rows = []
    for name in names:
        step = Step(cfg, resolved(cfg, parse_variant(name)), batch, vocab_size, seed=args.seed)
        for _ in range(args.warmup):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step(record=record_function)
        events = prof.key_averages()
        per_phase = {e.key: e.cpu_time_total / 1e3 / args.steps for e in events if e.key in PHASES}
        ops = [e for e in events if e.key not in PHASES and e.key.startswith("aten::")]
        total = sum(e.self_cpu_time_total for e in ops) or 1.0
        conv = sum(e.self_cpu_time_total for e in ops if "conv" in e.key)
        top = sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
        rows.append({
            "variant": name, "settings": step.settings,
            "phase_ms_per_step": per_phase, "conv_share_of_aten_self_time": conv / total,
            "top_ops": [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / args.steps,
                         "calls_per_step": e.count / args.steps,
                         "share": e.self_cpu_time_total / total} for e in top],
        })  # fmt: skip
    return {"rows": rows}


def untrained_damsm(cfg, directory: Path) -> Path:
    """A DAMSM folder with random weights (the step time does not depend on them)."""
    from tgsr.data.loader import build_vocabulary
    from tgsr.models.serialization import save_damsm
    from tgsr.training.damsm import build_damsm_modules

    vocab = build_vocabulary(cfg.data)
    torch.manual_seed(0)
    text_encoder, image_encoder = build_damsm_modules(cfg, len(vocab))
    return save_damsm(text_encoder, image_encoder, directory, vocab, cfg.damsm)


def mode_fit(cfg, names: list[str], args) -> dict:
    """The real training loop; seconds between consecutive steps (``on_eval`` every step)."""
    from tgsr.config import load_config
    from tgsr.device import effective_num_workers
    from tgsr.training.trainer import fit

    if len(names) != 1:
        raise SystemExit("--mode fit runs one variant per process")
    changes = parse_variant(names[0])
    overrides = [f"train.max_steps={args.steps + args.warmup}", "train.eval_every=1",
                 "train.checkpoint_every=0", "train.image_every=0"]  # fmt: skip
    for key, path in (("channels_last", "train.channels_last"),
                      ("mixed_precision", "train.mixed_precision"),
                      ("num_workers", "data.num_workers"), ("threads", "train.torch_threads")):  # fmt: skip
        if key in changes:
            overrides.append(f"{path}={json.dumps(changes[key])}")
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        overrides.append(f"damsm.path={untrained_damsm(cfg, Path(tmp) / 'damsm')}")
        cfg = load_config(args.preset, args.overrides + overrides)
        if "num_workers" in changes:  # as asked, not as tgsr.device would choose here
            import tgsr.training.common as common

            common.effective_num_workers = lambda n: n
        t0 = time.perf_counter()
        fit(cfg, Path(tmp) / "run", progress=False, cpu=True,
            on_eval=lambda step, g, t: stamps.append(time.perf_counter()))  # fmt: skip
        total = time.perf_counter() - t0
    first = max(args.warmup - 1, 0)  # the stamp that ends the last warm-up step
    gaps = [b - a for a, b in zip(stamps[first:], stamps[first + 1 :], strict=False)]
    med = statistics.median(gaps)
    settings = {
        **resolved(cfg, {}),
        "num_workers": changes.get("num_workers", effective_num_workers(cfg.data.num_workers)),
    }
    return {"rows": [{"variant": names[0], "settings": settings, "overrides": overrides,
                      "step_s": summarise(gaps), "steps_per_min": 60 / med,
                      "mean_steps_per_min": 60 * len(gaps) / sum(gaps),
                      "process_wall_s": total}]}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--batch", type=int, default=None, help="default: the preset's")
    p.add_argument("--mode", choices=("step", "profile", "fit"), default="step")
    p.add_argument("--variants", default="default", help="comma-separated; see the docstring")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=25, help="operators listed (--mode profile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON file (also printed)")
    args = p.parse_args(argv)

    from tgsr.config import load_config

    cfg = load_config(args.preset, args.overrides)
    args.batch = args.batch or cfg.train.batch_size
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    load_before = os.getloadavg()
    run = {"step": mode_step, "profile": mode_profile, "fit": mode_fit}[args.mode]
    result = {
        "benchmark": "cpu_step_profile", "mode": args.mode, "preset": args.preset,
        "overrides": args.overrides, "batch": args.batch, "steps": args.steps,
        "warmup": args.warmup, "environment": environment(),
        "load_average_before": load_before,
        **run(cfg, names, args),
        "load_average_after": os.getloadavg(),
        "command": "python benchmarks/cpu_step_profile.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }  # fmt: skip
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
