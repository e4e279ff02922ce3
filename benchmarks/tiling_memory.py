"""Tiled inference on a large input: wall time and peak RSS (a benchmark, never a CI gate).

Default: a 256 x 256 LR image through a x8 generator of the default config (random weights:
speed and memory do not depend on the weights) -> a 2048 x 2048 output, on the CPU, once per tile
size, each in a fresh process so that its peak RSS is its own. Writes JSON::

    python benchmarks/tiling_memory.py --out benchmarks/results/tiling_memory.json
    python benchmarks/tiling_memory.py --lq 64 --tiles 32 --threads 1   # a quick run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _one_run(lq_size: int, scale: int, tile: int, overlap: int | None, threads: int, queue) -> None:
    import numpy as np
    import torch

    from tgsr.config import load_config
    from tgsr.models import TextEncoder, build_generator
    from tgsr.pipeline import PipelineInfo, TGSRPipeline
    from tgsr.text import Vocabulary

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(None, [f"data.scale={scale}"])
    te = cfg.damsm.text_encoder
    vocab = Vocabulary.build(["a red and cyan striped circle on the left"])
    text_encoder = TextEncoder(te, len(vocab))
    generator = build_generator(cfg, 2 * te.hidden_dim)
    info = PipelineInfo(scale=scale, lq_size=cfg.data.hr_size // scale, max_words=18)
    pipe = TGSRPipeline(generator, text_encoder, vocab, info)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (lq_size, lq_size, 3), dtype=np.uint8)
    base = _rss_mb()
    t0 = time.perf_counter()
    out = pipe(image, "a red and cyan striped circle", tile=tile, overlap=overlap, output_type="np")
    seconds = time.perf_counter() - t0
    sr = out.images[0]
    queue.put(
        {
            "lq": [lq_size, lq_size],
            "output": list(sr.shape[:2]),
            "tile": tile,
            "overlap": overlap,
            "tiled": out.tiled,
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(_rss_mb(), 1),
            "rss_before_mb": round(base, 1),
            "generator_params": sum(p.numel() for p in generator.parameters()),
            "finite": bool(np.isfinite(sr).all()),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lq", type=int, default=256, help="LR side")
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--tiles", type=int, nargs="+", default=[64], help="LR tile sides")
    parser.add_argument("--overlap", type=int, default=None, help="default: the pipeline's")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tiling_memory.json"))
    args = parser.parse_args(argv)

    import torch

    import tgsr

    ctx = mp.get_context("spawn")
    runs = []
    for tile in args.tiles:
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_one_run, args=(args.lq, args.scale, tile, args.overlap, args.threads, queue)
        )
        proc.start()
        result = queue.get()
        proc.join()
        runs.append(result)
        print(json.dumps(result), flush=True)
    report = {
        "benchmark": "tiling_memory",
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "versions": {
            "tgsr": tgsr.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
