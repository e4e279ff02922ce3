"""`tgsr data check` and `tgsr data degrade`: thin commands over ``tgsr.data``.

``degrade`` crops each image to a multiple of the scale by dropping its last rows/columns (the
SR convention, MATLAB's ``modcrop``), then writes ``quantize(degrade(image, scale, method))`` as an
8-bit PNG named after the input's stem: the same LR that training and evaluation build.
"""

from __future__ import annotations

import json
import os
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
        ("bad entries (captions, split lists, manifest)", len(report["bad_records"])),
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


def _images_under(folder: Path) -> list[Path]:
    """Image files in ``folder`` and its subfolders, sorted (hidden files and folders skipped)."""
    found = []
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(list_images(dirpath))
    return found


def _collect_inputs(inputs: list[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """``(image, output path relative to --out)`` per input image: ``<stem>.png``, or with
    ``recursive`` ``<subfolders>/<stem>.png`` for images below a folder given as input."""
    files: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            found = _images_under(item) if recursive else list_images(item)
            if not found:
                subfolders = [p for p in item.iterdir() if p.is_dir() and p.name[0] != "."]
                if subfolders and not recursive:
                    raise TGSRError(
                        f"no images directly in {item} (it has {len(subfolders)} subfolders; "
                        "pass --recursive)"
                    )
                raise TGSRError(f"no images in {item}")
            files.extend((f, f.relative_to(item).with_suffix(".png")) for f in found)
        elif item.exists():
            files.append((item, Path(f"{item.stem}.png")))
        else:
            raise TGSRError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for f, rel in files:
        if rel in seen:
            raise TGSRError(f"{seen[rel]} and {f} would both be written as {rel.as_posix()}")
        seen[rel] = f
    return files


def _check_out(out: Path, inputs: list[Path], files: list[tuple[Path, Path]]) -> None:
    """Refuse an --out that would put LR images into an input folder (the data set) or over an
    input image, before anything is written."""
    if out.exists() and not out.is_dir():
        raise TGSRError(f"--out {out} is a file, not a folder")
    target = out.resolve()
    for item in inputs:
        if item.is_dir():
            folder = item.resolve()
            if target == folder or folder in target.parents:
                where = "is the input folder" if target == folder else "is inside the input folder"
                raise TGSRError(
                    f"--out {out} {where} {item}: the LR images would be mixed into the data "
                    "set; choose an --out outside it"
                )
    for f, rel in files:
        if (target / rel).resolve() == f.resolve():
            raise TGSRError(f"--out {out} would overwrite the input {f}; choose another --out")


def degrade(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    scale: int = typer.Option(..., "--scale", "-s", help="Downscaling factor, e.g. 4 or 8."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the LR PNGs."),
    method: str = typer.Option("bicubic", help="bicubic (MATLAB imresize) or bilinear."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images, count them."),
    recursive: bool = typer.Option(
        False,
        "--recursive",
        "-r",
        help="Also take images in the subfolders of a folder input (e.g. CUB's class folders); "
        "their subfolders are kept under --out.",
    ),
) -> None:
    """Write LR images exactly as training and evaluation make them (8-bit PNG, same stem).

    Images are first cropped to a multiple of the scale (last rows/columns dropped). --out must
    not be an input folder or lie inside one (the LR images would be mixed into the data set).
    """
    if scale < 2:
        raise TGSRError(f"--scale must be >= 2, got {scale}")
    if method not in ("bicubic", "bilinear"):
        raise TGSRError(f"--method must be bicubic or bilinear, got {method!r}")
    from tgsr.data.degradations import degrade as degrade_image
    from tgsr.data.degradations import image_to_tensor, quantize, tensor_to_image

    files = _collect_inputs(inputs, recursive)
    _check_out(out, inputs, files)
    skipped: list[str] = []
    written = 0
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("degrading", total=len(files))
        for path, rel in files:
            try:
                img = load_image(path)
                h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
                if h == 0 or w == 0:
                    raise BadInputError(
                        f"{path}: {img.shape[1]}x{img.shape[0]} is smaller than the scale {scale}"
                    )
                lq = quantize(degrade_image(image_to_tensor(img[:h, :w]), scale, method))
                try:
                    save_png(out / rel, tensor_to_image(lq))
                except OSError as exc:
                    raise TGSRError(f"{out / rel}: cannot write ({exc.strerror or exc})") from None
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
