"""`tgsr upscale`, `tgsr export`, `tgsr demo`: thin commands over :mod:`tgsr.pipeline`,
:mod:`tgsr.export` and :mod:`tgsr.demo`."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tgsr.data.images import list_images, load_image, save_png
from tgsr.errors import BadInputError, TGSRError

# Commands import what needs torch (torch, tgsr.pipeline, tgsr.export, tgsr.evaluation.figures,
# with matplotlib) inside their bodies: torch takes ~3-4 s to import and `tgsr --help` or a
# mistyped option should answer at once. tgsr.demo needs gradio, an optional dependency.

# an output above this many pixels is refused up front (float32 RGB: 12 bytes per pixel)
MAX_OUTPUT_PIXELS = 2**28


@dataclass
class Job:
    image: Path
    captions: list[str]
    stem: str
    source: str  # where the job came from (for messages)


# ----------------------------------------------------------------------------- inputs


def _read_manifest(path: Path, default_captions: list[str], skip_bad: bool, bad: list[str]):
    """JSONL lines ``{"image": p, "caption": c}`` or ``{"image": p, "captions": [...]}``."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the manifest ({exc})") from None
    jobs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
                raise ValueError('each line needs an "image" path')
            if "captions" in rec:
                caps = rec["captions"]
                if (
                    not isinstance(caps, list)
                    or not caps
                    or not all(isinstance(c, str) for c in caps)
                ):
                    raise ValueError('"captions" must be a non-empty list of strings')
            elif "caption" in rec:
                if not isinstance(rec["caption"], str):
                    raise ValueError('"caption" must be a string')
                caps = [rec["caption"]]
            else:
                caps = list(default_captions)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            msg = f"{path}:{n}: {str(exc).splitlines()[0]}"
            if not skip_bad:
                raise BadInputError(msg) from None
            bad.append(msg)
            continue
        image = Path(rec["image"]).expanduser()
        if not image.is_absolute():
            image = path.parent / image
        jobs.append(Job(image, caps, image.stem, f"{path}:{n}"))
    return jobs


def collect_jobs(
    inputs: list[Path], captions: list[str], skip_bad: bool = False
) -> tuple[list[Job], list[str]]:
    """Files, folders (their images, sorted) and ``.jsonl`` manifests -> jobs, bad-entry notes."""
    jobs: list[Job] = []
    bad: list[str] = []
    for inp in inputs:
        if inp.is_dir():
            found = list_images(inp)
            if not found:
                raise BadInputError(f"{inp}: no image files in this folder")
            jobs += [Job(p, list(captions), p.stem, str(inp)) for p in found]
        elif inp.suffix.lower() == ".jsonl":
            if not inp.is_file():
                raise BadInputError(f"{inp}: manifest not found")
            jobs += _read_manifest(inp, captions, skip_bad, bad)
        elif inp.exists():
            jobs.append(Job(inp, list(captions), inp.stem, str(inp)))
        else:
            msg = f"{inp}: file not found"
            if not skip_bad:
                raise BadInputError(msg)
            bad.append(msg)
    seen: dict[str, Path] = {}
    for job in jobs:
        if job.stem in seen and seen[job.stem] != job.image:
            raise BadInputError(
                f"{seen[job.stem]} and {job.image} would both write {job.stem}.png; rename one"
            )
        seen[job.stem] = job.image
    return jobs, bad


def output_names(stem: str, n_captions: int) -> list[str]:
    """``<stem>.png`` for one caption, ``<stem>_<k>.png`` (k = 1..n) for several."""
    if n_captions == 1:
        return [f"{stem}.png"]
    return [f"{stem}_{k}.png" for k in range(1, n_captions + 1)]


def _pick_device(device: str):
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise TGSRError(f"unknown device {device!r} (use cpu, cuda, cuda:0, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TGSRError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise TGSRError(f"--device {device}: MPS is not available on this machine")
    return dev


# ----------------------------------------------------------------------------- commands


def upscale(
    inputs: list[Path] = typer.Argument(
        ..., help="Image files, folders of images, or .jsonl manifests.", show_default=False
    ),
    model: Path = typer.Option(..., "--model", "-m", help="Pipeline folder (or a run folder)."),
    text: list[str] = typer.Option(
        None, "--text", "-t", help="Caption; give it several times for one output per caption."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    scale: int = typer.Option(None, "--scale", help="Expected factor; checked against the model."),
    tile: int = typer.Option(
        None,
        "--tile",
        help="LR tile side (default: automatic, the largest tiles that fit --max-memory; "
        "0: never tile).",
    ),
    overlap: int = typer.Option(
        None,
        "--overlap",
        help="Tile overlap in LR pixels (default: twice the model's receptive-field radius, "
        "which makes tiled = untiled).",
    ),
    max_memory: str = typer.Option(
        "2GiB",
        "--max-memory",
        help="Activation memory of one generator call (e.g. 512MiB, 4GB); larger images are tiled.",
    ),
    save_attention: bool = typer.Option(
        False, "--save-attention", help="Also write the per-word attention maps."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip unreadable inputs (counted) instead of stopping."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:0, mps."),
    dtype: str = typer.Option(
        "auto",
        "--dtype",
        help="auto (bf16 on GPUs with bf16 and CPUs with AMX/AVX-512-BF16, else float32), "
        "float32 or bf16.",
    ),
    lr_guard: float = typer.Option(
        None,
        "--lr-guard",
        help="Keep every output within this many dB (LR-PSNR) of its input, pulling it toward "
        "its back-projection only as far as needed (default: the model folder's lr_guard, "
        "usually none; 0: off).",
    ),
    compile_: bool = typer.Option(
        False,
        "--compile",
        help="Run the generator through torch.compile (static shapes; pays off for many tiles "
        "or images of one size). Where it fails: a warning, then eager.",
    ),
) -> None:
    """Upscale images with a caption (editable SR: several --text values, one output each)."""
    from tgsr.lr_guard import check_guard_db
    from tgsr.pipeline import CaptionWarning, TGSRPipeline
    from tgsr.tiling import parse_memory

    console = Console(stderr=True, soft_wrap=True)
    if tile is not None and tile < 0:
        raise TGSRError("--tile must be >= 0")
    try:
        check_guard_db(lr_guard, zero_is_off=True, name="--lr-guard")
    except ValueError as exc:
        raise TGSRError(str(exc)) from None
    try:
        budget = parse_memory(max_memory)
    except ValueError as exc:
        raise TGSRError(f"--max-memory: {exc}") from None
    dev = _pick_device(device)
    pipe = TGSRPipeline.from_pretrained(model, device=dev, dtype=dtype, compile=compile_)
    if scale is not None and scale != pipe.scale:
        raise TGSRError(f"--scale {scale} does not match the model: {model} upscales x{pipe.scale}")
    captions = list(text or [])
    jobs, bad = collect_jobs(list(inputs), captions or [""], skip_bad)
    if pipe.use_text and not captions and any(j.captions == [""] for j in jobs):
        console.print(
            "[yellow]note:[/] no --text given: images without a caption are upscaled with an "
            "empty caption (the model's text-free output)"
        )
    if not pipe.use_text and captions:
        console.print("[yellow]note:[/] this model does not use text; --text is ignored")
    if out.exists() and not out.is_dir():
        raise TGSRError(f"--out {out}: a file is in the way (give a folder)")
    out.mkdir(parents=True, exist_ok=True)
    index = []
    total = sum(len(j.captions) for j in jobs)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    written = 0
    # a bar on a terminal only: in logs its last frame would sit beside the one-line errors
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal) as progress:  # fmt: skip
        task = progress.add_task("upscaling", total=total)
        for job in jobs:
            try:
                lq = load_image(job.image)
            except BadInputError as exc:
                if not skip_bad:
                    raise
                bad.append(str(exc))
                progress.advance(task, len(job.captions))
                continue
            h, w = lq.shape[:2]
            if h * w * pipe.scale**2 > MAX_OUTPUT_PIXELS:
                msg = (
                    f"{job.image}: {w}x{h} would give a {w * pipe.scale}x{h * pipe.scale} output, "
                    f"above the {MAX_OUTPUT_PIXELS} pixel limit; downscale or crop it first"
                )
                if not skip_bad:
                    raise BadInputError(msg)
                bad.append(msg)
                progress.advance(task, len(job.captions))
                continue
            names = output_names(job.stem, len(job.captions))
            outputs = []
            for caption, name in zip(job.captions, names, strict=True):
                progress.update(task, description=f"{job.image.name}")

                def on_tile(done, n, _name=job.image.name):
                    progress.update(task, description=f"{_name} (tile {done}/{n})")

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", CaptionWarning)
                    result = pipe(
                        lq,
                        caption,
                        return_attention=save_attention and pipe.use_text,
                        tile=tile,
                        overlap=overlap,
                        max_memory=budget,
                        output_type="np",
                        progress=on_tile,
                        lr_guard=lr_guard,
                    )
                for note in result.warnings:
                    console.print(f"[yellow]warning:[/] {job.image.name}: {note}")
                sr = result.images[0]
                save_png(out / name, sr)
                outputs.append(sr)
                written += 1
                entry = {"input": str(job.image), "caption": caption, "output": name,
                         "unknown_words": result.unknown_words[0], "tiled": result.tiled}  # fmt: skip
                if result.lr_guard_alpha is not None:
                    entry["lr_guard_alpha"] = round(float(result.lr_guard_alpha[0]), 4)
                if save_attention and result.attention is not None:
                    entry["attention"] = _save_attention(
                        out, Path(name).stem, sr, result.words[0], result.attention[0]
                    )
                index.append(entry)
                progress.advance(task)
            if len(job.captions) > 1:
                from tgsr.evaluation.figures import edit_rows

                edit_rows(lq, job.captions, outputs, out / f"{job.stem}_grid.png")
    with open(out / "results.jsonl", "w") as f:
        for entry in index:
            f.write(json.dumps(entry) + "\n")
    summary = f"wrote {written} image(s) to {out}"
    if bad:
        for msg in bad:
            console.print(f"[yellow]skipped:[/] {msg}")
        summary += f"; skipped {len(bad)} bad input(s)"
    typer.echo(summary)


def _save_attention(out: Path, stem: str, sr, words: list[str], attn) -> str:
    """``<stem>_attention/<i>_<word>.png`` (heat maps at the SR size) + an overview figure."""
    from tgsr.evaluation.figures import attention_figure
    from tgsr.pipeline import attention_to_image

    folder = out / f"{stem}_attention"
    folder.mkdir(parents=True, exist_ok=True)
    for i, word in enumerate(words):
        save_png(folder / f"{i:02d}_{word}.png", attention_to_image(attn[i], sr.shape[:2]))
    if words:
        attention_figure(sr, words, attn, folder / "overview.png")
    return folder.name


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

    export_pipeline(run_dir, out, onnx=onnx, lr_guard=lr_guard)
    typer.echo(f"wrote the pipeline folder {out}")
    if onnx:
        typer.echo(f"wrote ONNX files in {out / 'onnx'}")
    typer.echo(f'use it:  tgsr upscale IMAGE --model {out} --text "..." --out results/')
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
    from tgsr.demo import launch
    from tgsr.pipeline import TGSRPipeline

    pipe = TGSRPipeline.from_pretrained(model, device=_pick_device(device))
    launch(pipe, host=host, port=port, max_upload_mb=max_upload_mb)
