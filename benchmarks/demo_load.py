"""The web demo under load: concurrent clients on 127.0.0.1 against `tgsr demo`.

Starts ``tgsr demo`` in a child process with a tiny model (random seeded weights written through
the real export path, as the tests do), then runs ``--clients`` threads, each sending
``--requests`` uploads with mixed sizes and captions (some meant to be refused: too large, too
many captions, a caption over the limit, a decompression-bomb header, a corrupt file) plus one
upload over the size limit. Every request must end answered, or refused with a clear message
(the queue is full, or the input is invalid); anything else counts as ``unexpected``. The
server's RSS is sampled every 0.2 s; its peak (VmHWM) is reported. Stops by itself.

    python benchmarks/demo_load.py --clients 24 --requests 6 --out benchmarks/results/demo_load.json
    python benchmarks/demo_load.py --handler-only 300 --out benchmarks/results/demo_handler.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tiny-model builder shared with the tests

CAPTIONS = [
    "a red and cyan striped circle",
    "",
    "a blue and yellow checked square on the left 🟦🟨",
    "a big purple and orange star " * 5,  # 150 characters: read up to max_words
    "a red circle\na green triangle\na blue square",  # three edits
    "a\nb\nc\nd\ne",  # five captions: refused (limit 4)
    "x" * 201,  # over the 200-character limit: refused
]
SIZES = [8, 12, 16, 24, 32, 48, 64, 300]  # LR side; 300 is above the demo's 256 limit
# per HTTP call: gradio_client's default 5 s fails on a busy CPU; the result stream may wait
# for as long as the queue is long
HTTP_TIMEOUT = {"timeout": 300.0, "read": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def make_inputs(folder: Path) -> dict[str, Path]:
    from helpers_pipeline import natural_image

    files = {}
    for side in SIZES:
        p = folder / f"lr_{side}.png"
        Image.fromarray(natural_image(side, side, seed=side)).save(p)
        files[f"png{side}"] = p
    bomb = folder / "bomb.png"  # header claims 30000 x 30000 pixels
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))  # fmt: skip
    files["bomb"] = bomb
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(files["png16"].read_bytes()[:60])
    files["corrupt"] = corrupt
    big = folder / "big.png"  # over the 10 MB upload limit
    big.write_bytes(files["png8"].read_bytes() + os.urandom(12 * 1024 * 1024))
    files["big"] = big
    return files


def classify(exc: BaseException) -> tuple[str, str]:
    from gradio_client.exceptions import AppError

    text = " ".join(str(exc).split())[:160]
    if type(exc).__name__ == "QueueError" or "Queue is full" in text:
        return "refused_queue_full", text
    if isinstance(exc, AppError) and text:
        return "refused_invalid_input", text
    return "unexpected", f"{type(exc).__name__}: {text}"


def client_loop(url: str, files: dict, n: int, seed: int, results: list, lock) -> None:
    from gradio_client import Client, handle_file

    rng = random.Random(seed)
    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": httpx.Timeout(**HTTP_TIMEOUT)})
    except Exception as exc:  # noqa: BLE001 - counted, not raised
        with lock:
            results.append(("unexpected", f"connect: {exc}", 0.0, "-", time.time()))
        return
    kinds = [f"png{s}" for s in SIZES] * 3 + ["bomb", "corrupt"]
    for _ in range(n):
        kind = rng.choice(kinds)
        caption = rng.choice(CAPTIONS)
        t0 = time.perf_counter()
        try:
            client.predict(handle_file(str(files[kind])), caption, api_name="/upscale")
            outcome, note = "answered", ""
        except Exception as exc:  # noqa: BLE001 - classified
            outcome, note = classify(exc)
        with lock:
            results.append((outcome, note, time.perf_counter() - t0, kind, time.time()))


def oversized_upload(url: str, path: Path) -> tuple[str, str]:
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, httpx_kwargs={"timeout": httpx.Timeout(**HTTP_TIMEOUT)})
        client.predict(handle_file(str(path)), "a circle", api_name="/upscale")
        return "answered", ""
    except Exception as exc:  # noqa: BLE001 - classified
        text = " ".join(str(exc).split())[:200]
        if "413" in text or "size" in text.lower() or "large" in text.lower():
            return "refused_upload_too_large", text
        return classify(exc)


def handler_only(calls: int, out: Path) -> None:
    """The demo's handler called ``calls`` times in this process and thread (no server): RSS
    every 30 calls, to tell the handler's memory from the server's."""
    import gc

    from helpers_pipeline import make_pipeline_dir, natural_image
    from tgsr import TGSRPipeline
    from tgsr.demo.app import build_demo

    scratch = tempfile.TemporaryDirectory(prefix="tgsr-demo-load-")  # removed at exit
    pipe = TGSRPipeline.from_pretrained(make_pipeline_dir(Path(scratch.name)))
    demo = build_demo(pipe, examples=False)
    fn = next(f.fn for f in demo.fns.values() if f.fn.__name__ == "upscale")
    rng = random.Random(0)
    images = [natural_image(s, s, s) for s in SIZES if s <= 64]
    captions = [c for c in CAPTIONS if len(c) <= 200 and c.count("\n") < 4]
    series = []
    for i in range(1, calls + 1):
        fn(rng.choice(images), rng.choice(captions))
        if i % 30 == 0:
            gc.collect()
            series.append((i, round(rss_mb(os.getpid()), 1)))
    report = {"benchmark": "demo_handler_memory", "calls": calls, "rss_mb_every_30": series}
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/demo_load.json")
    ap.add_argument(
        "--handler-only",
        type=int,
        default=0,
        metavar="N",
        help="instead: call the handler N times in-process and report its RSS",
    )
    args = ap.parse_args()
    if args.handler_only:
        return handler_only(args.handler_only, args.out)

    from helpers_pipeline import make_pipeline_dir

    work = Path(tempfile.mkdtemp(prefix="tgsr-demo-load-"))
    model = make_pipeline_dir(work / "model")
    files = make_inputs(work)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    log = open(work / "server.log", "wb")  # a file, not a pipe: a full pipe blocks the server
    server = subprocess.Popen(
        [sys.executable, "-m", "tgsr.cli.app", "demo", "--model", str(model), "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    t_start = time.time()
    while time.time() - t_start < 120:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                sys.exit("the demo did not start: " + (work / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    idle_rss = rss_mb(server.pid)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((round(time.time() - t_start, 2), rss_mb(server.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results: list = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    threads = [
        threading.Thread(
            target=client_loop, args=(url, files, args.requests, i, results, lock), daemon=True
        )  # fmt: skip
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    big = oversized_upload(url, files["big"])
    for t in threads:
        t.join(timeout=max(1.0, args.timeout - (time.perf_counter() - t0)))
    wall = time.perf_counter() - t0
    alive = server.poll() is None
    after = oversized_upload(url, files["png16"]) if alive else ("unexpected", "server died")
    peak = rss_mb(server.pid, "VmHWM")
    stop.set()
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()
    server_log = (work / "server.log").read_text(errors="replace")
    shutil.rmtree(work, ignore_errors=True)

    counts: dict[str, int] = {}
    messages: dict[str, set] = {}
    for outcome, note, _, _, _ in results:
        counts[outcome] = counts.get(outcome, 0) + 1
        messages.setdefault(outcome, set()).add(note)
    latencies = sorted(dt for o, _, dt, _, _ in results if o == "answered")
    timeline = sorted((round(t - t_start, 1), o[:8]) for o, _, _, _, t in results)
    import gradio
    import torch

    report = {
        "benchmark": "demo_load",
        "device": "cpu",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared, busy)",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gradio": gradio.__version__,
        },  # fmt: skip
        "clients": args.clients,
        "requests_per_client": args.requests,
        "requests": len(results),
        "unfinished_clients": sum(t.is_alive() for t in threads),
        "outcomes": counts,
        "messages": {k: sorted(v)[:8] for k, v in messages.items() if k != "answered"},
        "oversized_upload": {"outcome": big[0], "message": big[1]},
        "server_alive_after": alive,
        "server_log_tracebacks": server_log.count("Traceback"),
        "request_after_load": after[0],
        "answered_latency_s": {
            "p50": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
            "p95": round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        },
        "wall_s": round(wall, 1),
        "server_rss_mb": {
            "idle": round(idle_rss, 1),
            "peak_vmhwm": round(peak, 1),
            "max_sampled": round(max(r for _, r in samples), 1),
        },  # fmt: skip
        "rss_samples": samples[:: max(1, len(samples) // 60)],
        "timeline": timeline,  # (seconds since the server was up, outcome) per request
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("rss_samples", "timeline")},
                     indent=1))  # fmt: skip
    ok = (alive and counts.get("unexpected", 0) == 0 and report["unfinished_clients"] == 0
          and big[0] == "refused_upload_too_large" and after[0] == "answered")  # fmt: skip
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
