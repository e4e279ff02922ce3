"""`tgsr data synth`: write the ShapeCaps benchmark to a folder (generic format)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tgsr.errors import TGSRError

# tgsr.data.synthetic is imported inside `synth`: it pulls in torch (~3-4 s), which `tgsr --help`
# should not wait for (hence also SPLITS here: tgsr.data.synthetic.SPLITS, checked by the tests).
SPLITS = ("train", "val", "test", "compositional")


def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write.")],
    num: Annotated[int, typer.Option("--num", "-n", help="Number of scenes.")] = 1000,
    size: Annotated[int, typer.Option("--size", help="HR side (a multiple of 16, >= 32).")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Data set seed.")] = 0,
    split: Annotated[
        str, typer.Option("--split", help="train | val | test | compositional.")
    ] = "train",
    scale: Annotated[
        int, typer.Option("--scale", help="Also write 8-bit LR images at this factor (0: none).")
    ] = 8,
    captions: Annotated[int, typer.Option("--captions", help="Captions per image.")] = 5,
    two_object_prob: Annotated[
        float, typer.Option("--two-object-prob", help="Share of two-object scenes.")
    ] = 0.5,
    solid_prob: Annotated[
        float, typer.Option("--solid-prob", help="Share of solid-colour objects.")
    ] = 0.2,
) -> None:
    """Generate the controlled benchmark: images/KEY.png + .txt captions, attributes.jsonl.

    --out must be new, empty, or a previous output of the same layout (same --split, --seed,
    --num and --scale: every file in it is rewritten); anything else is refused before writing.
    """
    from tgsr.data.synthetic import check_write_arguments, output_folder_problem, write_dataset

    if split not in SPLITS:
        raise TGSRError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    try:
        check_write_arguments(num, size, seed, scale or None, captions, two_object_prob,
                              solid_prob)  # fmt: skip
    except ValueError as exc:
        raise TGSRError(str(exc)) from None
    if scale and size % scale:
        raise TGSRError(f"--size {size} is not a multiple of --scale {scale}")
    problem = output_folder_problem(out, num, seed, split, scale or None)
    if problem is not None:
        raise TGSRError(problem)
    try:
        info = write_dataset(
            out, num, size=size, seed=seed, split=split, scale=scale or None, captions=captions,
            two_object_prob=two_object_prob, solid_prob=solid_prob,
        )  # fmt: skip
    except ValueError as exc:
        raise TGSRError(str(exc)) from None
    except OSError as exc:
        where = exc.filename or out
        raise TGSRError(f"{where}: cannot write ({exc.strerror or exc})") from None
    typer.echo(f"wrote {info['images']} {split} scenes ({size}x{size}) to {out}")
