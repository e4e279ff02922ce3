"""`tgsr export`, `tgsr demo`: thin commands over :mod:`tgsr.export` and :mod:`tgsr.demo`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from tgsr.cli.upscale import pick_device

# torch, tgsr.pipeline, tgsr.export and tgsr.demo (gradio, optional) are imported inside the
# commands: `tgsr --help` should answer at once.


def export(
    run_dir: Path = typer.Argument(..., help="Training run folder (written by `tgsr train`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pipeline folder to write."),
    onnx: bool = typer.Option(False, "--onnx", help="Also export generator + text encoder ONNX."),
    lr_guard: float = typer.Option(
        None,
        "--lr-guard",
        help="Write this LR guard (dB) into pipeline.json: the folder's outputs then stay "
        "within it of their inputs unless a call says otherwise (see tgsr upscale --lr-guard).",
    ),
) -> None:
    """Export a run as a pipeline folder (drops optimizer, discriminator, image encoder)."""
    from tgsr.export import export_pipeline
    from tgsr.pipeline import PIPELINE_NAME, PipelineInfo

    export_pipeline(run_dir, out, onnx=onnx, lr_guard=lr_guard)
    typer.echo(f"wrote the pipeline folder {out}")
    if onnx:
        typer.echo(f"wrote ONNX files in {out / 'onnx'}")
        if lr_guard is not None:  # the graphs are the bare networks
            typer.echo(f"note: the ONNX graphs do not apply the LR guard ({lr_guard:g} dB); "
                       "tgsr upscale, the pipeline and the demo do")  # fmt: skip
    # a no-text model (baseline) ignores captions: its hint has none
    text = ' --text "..."' if PipelineInfo.load(out / PIPELINE_NAME).use_text else ""
    typer.echo(f"use it:  tgsr upscale IMAGE --model {out}{text} --out results/")
    typer.echo(f"         tgsr demo --model {out}")


def demo(
    model: Path = typer.Option(..., "--model", "-m", help="Pipeline folder (or a run folder)."),
    port: int = typer.Option(7860, "--port", help="Port (0: a free one)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (default: local only)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:0, mps."),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Upload size limit."),
) -> None:
    """Start the web demo (gradio; local only unless --host says otherwise)."""
    import math

    from tgsr.errors import TGSRError

    if not (max_upload_mb > 0 and math.isfinite(max_upload_mb)):
        raise TGSRError(f"--max-upload-mb must be a positive number, got {max_upload_mb:g}")
    from tgsr.demo import launch
    from tgsr.pipeline import TGSRPipeline

    pipe = TGSRPipeline.from_pretrained(model, device=pick_device(device))
    # SIGTERM (systemd, docker stop, kill) ends the server as Ctrl-C does, so the exit handlers
    # run and the example images' temporary folder is removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    launch(pipe, host=host, port=port, max_upload_mb=max_upload_mb)
