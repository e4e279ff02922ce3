"""`tgsr upscale` before the model loads: inputs (files, folders, ``.jsonl`` manifests) become
jobs, and everything that can be checked without the model is checked before anything is
written -- the options, --out, outputs that would replace an input, one another or an earlier
run's, and each input's header. Also the output-size rule, checked once the model's scale is
known."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tgsr.data.images import image_size, list_images
from tgsr.errors import BadInputError, TGSRError

INDEX_NAME = "results.jsonl"


@dataclass
class Job:
    image: Path
    captions: list[str]
    stem: str
    source: str  # where the job came from (for messages)
    size: tuple[int, int] = (0, 0)  # (width, height) from the file's header


# (where, reason): a skipped input or manifest line; printed as "<where>: <reason>"
Skip = tuple[str, str]


# ----------------------------------------------------------------------------- inputs


def _manifest_captions(rec, default_captions: list[str]) -> list[str]:
    if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
        raise ValueError('each line needs an "image" path')
    if "captions" in rec:
        caps = rec["captions"]
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            raise ValueError('"captions" must be a non-empty list of strings')
        return caps
    if "caption" in rec:
        if not isinstance(rec["caption"], str):
            raise ValueError('"caption" must be a string')
        return [rec["caption"]]
    return list(default_captions)


def _read_manifest(path: Path, default_captions: list[str], skip_bad: bool, bad: list[Skip]):
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
            caps = _manifest_captions(rec, default_captions)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            where, reason = f"{path}:{n}", str(exc).splitlines()[0]
            if not skip_bad:
                raise BadInputError(f"{where}: {reason}") from None
            bad.append((where, reason))
            continue
        image = Path(rec["image"]).expanduser()
        if not image.is_absolute():
            image = path.parent / image
        jobs.append(Job(image, caps, image.stem, f"{path}:{n}"))
    return jobs


def collect_jobs(
    inputs: list[Path], captions: list[str], skip_bad: bool = False
) -> tuple[list[Job], list[Skip]]:
    """Files, folders (their images, sorted) and ``.jsonl`` manifests -> jobs, skipped entries
    ``(where, reason)``."""
    jobs: list[Job] = []
    bad: list[Skip] = []
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
            if not skip_bad:
                raise BadInputError(f"{inp}: file not found")
            bad.append((str(inp), "file not found"))
    return jobs, bad


def output_names(stem: str, n_captions: int) -> list[str]:
    """``<stem>.png`` for one caption, ``<stem>_<k>.png`` (k = 1..n) for several."""
    if n_captions == 1:
        return [f"{stem}.png"]
    return [f"{stem}_{k}.png" for k in range(1, n_captions + 1)]


def grid_name(job: Job) -> str | None:
    """``<stem>_grid.png``: the LR input beside every output, for a job with several captions."""
    return f"{job.stem}_grid.png" if len(job.captions) > 1 else None


def planned(job: Job, save_attention: bool) -> list[str]:
    """The names a job writes in --out: its outputs, its grid, its attention folders."""
    names = output_names(job.stem, len(job.captions))
    grid = [grid_name(job)] if len(job.captions) > 1 else []
    attention = [
        f"{Path(n).stem}_attention"
        for n, c in zip(names, job.captions, strict=True)
        if save_attention and c.strip()
    ]
    return names + grid + attention


def pick_device(device: str):
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


# ----------------------------------------------------------------------------- checks


def check_options(tile: int | None, overlap: int | None, max_memory: str, lr_guard) -> dict:
    """--tile / --overlap (by the pipeline's rule), --lr-guard, --max-memory -> the keyword
    arguments of each pipeline call."""
    from tgsr.lr_guard import check_guard_db
    from tgsr.tiling import check_tile_options, parse_memory

    try:
        check_tile_options(tile, overlap, ("--tile", "--overlap"))
        check_guard_db(lr_guard, zero_is_off=True, name="--lr-guard")
    except ValueError as exc:
        raise TGSRError(str(exc)) from None
    try:
        budget = parse_memory(max_memory)
    except ValueError as exc:
        raise TGSRError(f"--max-memory: {exc}") from None
    return {"tile": tile, "overlap": overlap, "max_memory": budget, "lr_guard": lr_guard}


def _check_out(out: Path) -> None:
    """--out is a folder or can become one (nothing is created here)."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                where = "a file is in the way" if p == out else f"{p} is a file, not a folder"
                raise TGSRError(f"--out {out}: {where} (give a folder)")
            if p != out and not os.access(p, os.W_OK | os.X_OK):
                raise TGSRError(f"--out {out}: no permission to create it in {p}")
            return


def _refuse_clashes(jobs: list[Job], save_attention: bool) -> None:
    """Two jobs that would write the same name in --out (``a.png`` with two captions and
    ``a_1.png``; two folders with an ``a.png``), the later silently replacing the earlier.
    The same image listed twice with the same captions writes the same outputs: allowed."""
    seen: dict[str, Job] = {}
    for job in jobs:
        for name in planned(job, save_attention):
            first = seen.setdefault(name, job)
            if first is job:
                continue
            same_image = os.path.realpath(first.image) == os.path.realpath(job.image)
            if same_image and first.captions == job.captions:
                continue
            if same_image:
                raise BadInputError(f"{job.image} is listed twice with other captions ("
                                    f"{first.source} and {job.source}), both writing {name}; "
                                    "give all its captions in one entry")  # fmt: skip
            raise BadInputError(f"{first.image} and {job.image} would both write {name} in "
                                "--out; rename one, or upscale them into separate folders")  # fmt: skip


def _refuse_replacing_inputs(out: Path, jobs: list[Job], manifests: list[Path]) -> None:
    inputs: dict[str, Path] = {}
    for p in [*(j.image for j in jobs), *manifests]:
        inputs.setdefault(os.path.realpath(p), p)
    names = [n for job in jobs for n in planned(job, False)] + [INDEX_NAME]
    clashes = [(n, inputs[r]) for n in names if (r := os.path.realpath(out / n)) in inputs]
    if clashes:
        name, path = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise TGSRError(f"--out {out}: writing {name} there would overwrite the input {path}"
                        f"{more}; choose another --out folder")  # fmt: skip


def _refuse_existing(out: Path, jobs: list[Job], save_attention: bool) -> None:
    if not out.is_dir():
        return
    found = [out / n for job in jobs for n in planned(job, save_attention) if (out / n).exists()]
    if found:
        raise TGSRError(f"--out {out} already holds {len(found)} of this run's output file(s) "
                        f"(first: {found[0]}); pass --overwrite to replace them, or choose "
                        "another --out folder")  # fmt: skip


def reason(exc: BaseException, path: Path) -> str:
    """A ``BadInputError("<path>: <reason>")`` -> ``<reason>``."""
    text, prefix = str(exc), f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _read_headers(jobs: list[Job], skip_bad: bool, bad: list[Skip]) -> list[Job]:
    """Each input's size from its header (nothing decoded), so that a file that is not an image
    stops the run (or is skipped) before the model loads and before anything is written."""
    kept = []
    for job in jobs:
        try:
            job.size = image_size(job.image)
        except BadInputError as exc:
            if not skip_bad:
                raise
            bad.append((str(job.image), reason(exc, job.image)))
            continue
        kept.append(job)
    return kept


def nothing_to_do(bad: list[Skip]) -> TGSRError:
    if not bad:
        return TGSRError("nothing to upscale: the inputs hold no images")
    return TGSRError(f"nothing was written: all {len(bad)} input(s) were bad (listed above)")


def print_skipped(console: Console, bad: list[Skip]) -> None:
    from rich.markup import escape

    for where, why in bad:
        console.print(f"[yellow]skipped:[/] {escape(f'{where}: {why}')}")


def check_inputs(inputs: list[Path], captions: list[str], out: Path, overwrite: bool,
                 save_attention: bool, skip_bad: bool, console: Console) -> tuple[list[Job], list[Skip]]:  # fmt: skip
    """Every check of --out and the inputs, before the model loads and before anything is
    written -> the jobs to run, the inputs skipped (``--skip-bad``)."""
    _check_out(out)
    jobs, bad = collect_jobs(inputs, captions or [""], skip_bad)
    _refuse_clashes(jobs, save_attention)
    manifests = [p for p in inputs if p.suffix.lower() == ".jsonl" and p.is_file()]
    _refuse_replacing_inputs(out, jobs, manifests)
    jobs = _read_headers(jobs, skip_bad, bad)
    if not overwrite:
        _refuse_existing(out, jobs, save_attention)
    if not jobs:
        print_skipped(console, bad)
        raise nothing_to_do(bad)
    return jobs, bad


# ----------------------------------------------------------------------------- output size


def check_output_sizes(jobs: list[Job], scale: int, skip_bad: bool, bad: list[Skip]) -> list[Job]:
    """Inputs whose output would exceed the pipeline's pixel limit: refused (or skipped), from
    their headers, before any work."""
    from tgsr.pipeline import MAX_OUTPUT_PIXELS, output_size_error

    kept = []
    for job in jobs:
        why = output_size_error(*job.size, scale, MAX_OUTPUT_PIXELS)
        if why is None:
            kept.append(job)
        elif skip_bad:
            bad.append((str(job.image), why))
        else:
            raise BadInputError(f"{job.image}: {why}")
    return kept
