"""`tgsr data check` and `tgsr data degrade`: thin commands over ``tgsr.data``.

``degrade`` crops each image to a multiple of the scale by dropping its last rows/columns (the
SR convention, MATLAB's ``modcrop``), then writes ``quantize(degrade(image, scale, method))`` as an
8-bit PNG named after the input's stem: the same LR that training and evaluation build.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tgsr.config import DataConfig
from tgsr.data.images import list_images, load_image, save_png
from tgsr.errors import BadInputError, TGSRError
from tgsr.text import Vocabulary

# Commands import what needs torch (tgsr.data.loader, tgsr.data.degradations) inside their bodies:
# torch takes ~3-4 s to import and `tgsr --help` or a mistyped option should answer at once.

REAL_FORMATS = ("cub", "oxford102", "coco", "celeba_hq", "celeba_attr", "folder", "jsonl")


def check(
    root: Path = typer.Argument(
        ..., help="Data set folder (the manifest file for --format jsonl)."
    ),
    format: str = typer.Option(..., "--format", "-f", help=f"One of: {', '.join(REAL_FORMATS)}."),
    split: str = typer.Option("train", help="Split to check: train, val or test."),
    vocab: Path | None = typer.Option(None, help="vocab.json to measure the OOV rate against."),
    hr_size: int = typer.Option(
        256, help="HR crop size: smaller images are reported (information: they are upsampled)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Validate a data set: images, captions per image, vocabulary, OOV rate, bad files.

    Every image is decoded. Images smaller than --hr-size are listed as information (training
    upsamples them). Exits with status 1 when problems are found: unreadable files, images below
    the floor (longer side under 32 px or shorter side under 8 px), bad caption or manifest entries.
    """
    if format not in REAL_FORMATS:
        raise TGSRError(f"--format must be one of {', '.join(REAL_FORMATS)}, got {format!r}")
    if split not in ("train", "val", "test"):
        raise TGSRError(f"--split must be train, val or test, got {split!r}")
    if hr_size < 1:
        raise TGSRError("--hr-size must be >= 1")
    from tgsr.data.loader import check_dataset

    vocabulary = None
    if vocab is not None:
        try:
            vocabulary = Vocabulary.load(vocab)
        except (OSError, ValueError) as exc:
            raise TGSRError(str(exc)) from None
    cfg = DataConfig(format=format, root=str(root), hr_size=hr_size)

    if as_json:
        report = check_dataset(cfg, split, vocabulary)
        typer.echo(json.dumps(report))
    else:
        console = Console(stderr=True)
        with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
            task = progress.add_task("decoding images", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = check_dataset(cfg, split, vocabulary, on_progress)
        _print_report(report)
    if report["unreadable"] or report["too_small"] or report["bad_records"]:
        raise typer.Exit(1)


def _print_report(report: dict) -> None:
    console = Console()
    table = Table(title=f"{report['format']} {report['split']}: {report['root']}")
    table.add_column("check")
    table.add_column("value", justify="right")
    cpi = report["captions_per_image"]
    rows = [
        ("images", report["images"]),
        ("captions", report["captions"]),
        (
            "captions per image (min / mean / max)",
            f"{cpi['min']} / {cpi['mean']:.2f} / {cpi['max']}",
        ),
        ("words (tokens)", report["words"]),
        ("vocabulary size (incl. <pad>, <unk>)", report["vocabulary_size"]),
    ]
    if "oov_rate" in report:
        rows.append(
            (
                "OOV rate vs --vocab",
                f"{100 * report['oov_rate']:.2f} % ({report['oov_words']} words)",
            )
        )
    rows += [
        ("unreadable images", len(report["unreadable"])),
        ("images below the floor (see docs/real_data.md)", len(report["too_small"])),
        (f"images smaller than {report['hr_size']} px (upsampled; info)", len(report["small"])),
        ("bad entries (captions, manifest)", len(report["bad_records"])),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    for title, colour in (("unreadable", "red"), ("too_small", "red"), ("bad_records", "red"),
                          ("small", "cyan")):  # fmt: skip
        items = report[title]
        for line in items[:10]:
            console.print(f"[{colour}]{title}[/{colour}] {line}", highlight=False, soft_wrap=True)
        if len(items) > 10:
            console.print(f"... and {len(items) - 10} more {title}")


def _collect_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(list_images(item))
        elif item.exists():
            files.append(item)
        else:
            raise TGSRError(f"{item}: no such file or folder")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise TGSRError(f"{seen[f.stem]} and {f} would both be written as {f.stem}.png")
        seen[f.stem] = f
    return files


def degrade(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    scale: int = typer.Option(..., "--scale", "-s", help="Downscaling factor, e.g. 4 or 8."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the LR PNGs."),
    method: str = typer.Option("bicubic", help="bicubic (MATLAB imresize) or bilinear."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images, count them."),
) -> None:
    """Write LR images exactly as training and evaluation make them (8-bit PNG, same stem).

    Images are first cropped to a multiple of the scale (last rows/columns dropped).
    """
    if scale < 2:
        raise TGSRError(f"--scale must be >= 2, got {scale}")
    if method not in ("bicubic", "bilinear"):
        raise TGSRError(f"--method must be bicubic or bilinear, got {method!r}")
    from tgsr.data.degradations import degrade as degrade_image
    from tgsr.data.degradations import image_to_tensor, quantize, tensor_to_image

    files = _collect_inputs(inputs)
    if not files:
        raise TGSRError("no images found in the given inputs")
    skipped: list[str] = []
    written = 0
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("degrading", total=len(files))
        for path in files:
            try:
                img = load_image(path)
                h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
                if h == 0 or w == 0:
                    raise BadInputError(
                        f"{path}: {img.shape[1]}x{img.shape[0]} is smaller than the scale {scale}"
                    )
                lq = quantize(degrade_image(image_to_tensor(img[:h, :w]), scale, method))
                save_png(out / f"{path.stem}.png", tensor_to_image(lq))
                written += 1
            except BadInputError as exc:
                if not skip_bad:
                    raise
                skipped.append(str(exc))
            progress.advance(task)
    typer.echo(f"wrote {written} LR image(s) (x{scale}, {method}) to {out}")
    if skipped:
        typer.echo(f"skipped {len(skipped)} bad image(s):", err=True)
        for line in skipped:
            typer.echo(f"  {line}", err=True)
