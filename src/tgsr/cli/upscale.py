"""`tgsr upscale`: a thin command over :mod:`tgsr.pipeline` -- inputs and manifests checked
before the model loads, outputs and their ``results.jsonl`` index written one by one, progress,
Ctrl-C."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from tgsr.data.images import image_size, list_images, load_image, save_png
from tgsr.errors import BadInputError, Interrupted, TGSRError

# Commands import what needs torch (torch, tgsr.pipeline, tgsr.export, tgsr.evaluation.figures,
# with matplotlib) inside their bodies: torch takes ~3-4 s to import and `tgsr --help` or a
# mistyped option should answer at once. tgsr.demo needs gradio, an optional dependency.

# seconds between two plain progress lines when stderr is not a terminal (logs, pipes)
PLAIN_PROGRESS_EVERY_S = 10.0
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


def _check_tile_options(tile: int | None, overlap: int | None) -> None:
    """--tile / --overlap by the pipeline's rule, before the model loads."""
    from tgsr.tiling import check_tile_options

    try:
        check_tile_options(tile, overlap, ("--tile", "--overlap"))
    except ValueError as exc:
        raise TGSRError(str(exc)) from None


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


def _planned(job: Job, save_attention: bool) -> list[str]:
    """The names a job writes in --out: its outputs, its grid, its attention folders."""
    names = output_names(job.stem, len(job.captions))
    grid = [f"{job.stem}_grid.png"] if len(job.captions) > 1 else []
    attention = [
        f"{Path(n).stem}_attention"
        for n, c in zip(names, job.captions, strict=True)
        if save_attention and c.strip()
    ]
    return names + grid + attention


def _refuse_replacing_inputs(out: Path, jobs: list[Job], manifests: list[Path]) -> None:
    inputs: dict[str, Path] = {}
    for p in [*(j.image for j in jobs), *manifests]:
        inputs.setdefault(os.path.realpath(p), p)
    names = [n for job in jobs for n in _planned(job, False)] + [INDEX_NAME]
    clashes = [(n, inputs[r]) for n in names if (r := os.path.realpath(out / n)) in inputs]
    if clashes:
        name, path = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise TGSRError(f"--out {out}: writing {name} there would overwrite the input {path}"
                        f"{more}; choose another --out folder")  # fmt: skip


def _refuse_existing(out: Path, jobs: list[Job], save_attention: bool) -> None:
    if not out.is_dir():
        return
    found = [out / n for job in jobs for n in _planned(job, save_attention) if (out / n).exists()]
    if found:
        raise TGSRError(f"--out {out} already holds {len(found)} of this run's output file(s) "
                        f"(first: {found[0]}); pass --overwrite to replace them, or choose "
                        "another --out folder")  # fmt: skip


def _reason(exc: BaseException, path: Path) -> str:
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
            bad.append((str(job.image), _reason(exc, job.image)))
            continue
        kept.append(job)
    return kept


def _nothing_to_do(bad: list[Skip]) -> TGSRError:
    if not bad:
        return TGSRError("nothing to upscale: the inputs hold no images")
    return TGSRError(f"nothing was written: all {len(bad)} input(s) were bad (listed above)")


def _print_skipped(console: Console, bad: list[Skip]) -> None:
    from rich.markup import escape

    for where, reason in bad:
        console.print(f"[yellow]skipped:[/] {escape(f'{where}: {reason}')}")


# ----------------------------------------------------------------------------- outputs


class _Outputs:
    """The --out folder, made at the first output (a run that writes nothing leaves nothing),
    and its results.jsonl: one flushed line per output, and per skipped input, as it happens;
    lines are appended, an earlier run's lines are kept."""

    def __init__(self, out: Path, skipped: list[Skip]):
        self.out = out
        self.written = 0
        self.skipped = list(skipped)  # every skipped input, for the summary
        self._index = None
        self._pending = list(skipped)  # skipped before the folder exists: written with it

    def save(self, name: str, img) -> None:
        self._open()
        try:
            save_png(self.out / name, img)
        except OSError as exc:
            raise TGSRError(f"{self.out / name}: cannot write it ({exc.strerror or exc})") from None
        self.written += 1

    def record(self, entry: dict) -> None:
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append((where, reason))
        self._skip_line(where, reason)

    def _skip_line(self, where: str, reason: str) -> None:
        if self._index is None:
            self._pending.append((where, reason))
        else:
            self.record({"input": where, "skipped": reason})

    def _open(self) -> None:
        if self._index is not None:
            return
        path = self.out / INDEX_NAME
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            cut = _last_line_cut(path)
            self._index = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
            if cut:  # a line cut short by a killed run stays on its own
                self._index.write("\n")
        except OSError as exc:
            raise TGSRError(
                f"--out {self.out}: cannot write there ({exc.strerror or exc})"
            ) from None
        pending, self._pending = self._pending, []
        for where, reason in pending:
            self._skip_line(where, reason)

    def so_far(self) -> str:
        if not self.written:
            return "nothing was written"
        return (f"{self.written} image(s) already written to {self.out} "
                f"(listed in {self.out / INDEX_NAME})")  # fmt: skip

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


def _last_line_cut(path: Path) -> bool:
    if not path.is_file() or not path.stat().st_size:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


@contextlib.contextmanager
def _ctrl_c_held():
    """Holds Ctrl-C back while an output and its results.jsonl line are written, so that an
    interrupted run lists every output it wrote; the interrupt follows right after."""
    held: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if held and callable(old):
            old(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt
        elif held and old == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


class _Progress:
    """The training/eval progress bar (ETA included) on a terminal, advanced by tiles; elsewhere
    (logs, pipes) a plain line on stderr every ``PLAIN_PROGRESS_EVERY_S`` seconds."""

    def __init__(self, total: int, console: Console):
        from tgsr.training.common import make_progress

        self.total, self.console = total, console
        self.plain = not console.is_terminal
        self.bar = make_progress(disable=self.plain)
        self.start = self.last = time.monotonic()

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        self.task = self.bar.add_task("upscale", total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def update(self, done: float, name: str, tile: tuple[int, int] | None = None) -> None:
        """``done``: outputs finished (a fraction for the tiles of the current one)."""
        info = f"{name} (tile {tile[0]}/{tile[1]})" if tile else name
        self.bar.update(self.task, completed=done, info=info)
        now = time.monotonic()
        if self.plain and done and now - self.last >= PLAIN_PROGRESS_EVERY_S:
            self.last = now
            elapsed = now - self.start
            left = elapsed * (self.total - done) / done
            self.console.print(
                f"upscale: {int(done)}/{self.total} output(s), {info}, "
                f"{datetime.timedelta(seconds=round(elapsed))} elapsed, "
                f"about {datetime.timedelta(seconds=round(left))} left",
                markup=False,
                highlight=False,
            )


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
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace outputs that already exist in --out (refused otherwise). Inputs are never "
        "overwritten.",
    ),
    scale: int = typer.Option(None, "--scale", help="Expected factor; checked against the model."),
    tile: int = typer.Option(
        None,
        "--tile",
        help="LR tile side, at least 4 (default: automatic, the largest tiles that fit "
        "--max-memory; 0: never tile).",
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
    from tgsr.tiling import parse_memory

    console = Console(stderr=True, soft_wrap=True)
    # what can be checked without the model is checked before it loads, and before anything is
    # written: the options, --out, every input's header, outputs that would replace files
    _check_tile_options(tile, overlap)
    try:
        check_guard_db(lr_guard, zero_is_off=True, name="--lr-guard")
    except ValueError as exc:
        raise TGSRError(str(exc)) from None
    try:
        budget = parse_memory(max_memory)
    except ValueError as exc:
        raise TGSRError(f"--max-memory: {exc}") from None
    _check_out(out)
    captions = list(text or [])
    jobs, bad = collect_jobs(list(inputs), captions or [""], skip_bad)
    manifests = [p for p in inputs if p.suffix.lower() == ".jsonl" and p.is_file()]
    _refuse_replacing_inputs(out, jobs, manifests)
    jobs = _read_headers(jobs, skip_bad, bad)
    if not overwrite:
        _refuse_existing(out, jobs, save_attention)
    if not jobs:
        _print_skipped(console, bad)
        raise _nothing_to_do(bad)
    dev = pick_device(device)

    from tgsr.pipeline import TGSRPipeline

    pipe = TGSRPipeline.from_pretrained(model, device=dev, dtype=dtype, compile=compile_)
    if scale is not None and scale != pipe.scale:
        raise TGSRError(f"--scale {scale} does not match the model: {model} upscales x{pipe.scale}")
    if tile and overlap is None and 2 * pipe.receptive_radius >= tile:
        raise TGSRError(f"--tile {tile} must be larger than the default --overlap of this model "
                        f"({2 * pipe.receptive_radius}: twice its receptive-field radius); "
                        f"give a larger --tile, or --overlap below {tile}")  # fmt: skip
    jobs = _check_output_sizes(jobs, pipe.scale, skip_bad, bad)
    if not jobs:
        _print_skipped(console, bad)
        raise _nothing_to_do(bad)
    if pipe.use_text and not captions and any(j.captions == [""] for j in jobs):
        console.print(
            "[yellow]note:[/] no --text given: images without a caption are upscaled with an "
            "empty caption (the model's text-free output)"
        )
    if not pipe.use_text and captions:
        console.print("[yellow]note:[/] this model does not use text; --text is ignored")
    if not pipe.use_text and save_attention:
        console.print("[yellow]note:[/] this model does not use text; --save-attention writes "
                      "no attention maps")  # fmt: skip
    results = _Outputs(out, bad)
    call = {"tile": tile, "overlap": overlap, "max_memory": budget, "lr_guard": lr_guard}
    try:
        no_words = _run(pipe, jobs, results, console, skip_bad, save_attention, call)
    finally:
        results.close()
    _print_skipped(console, results.skipped)
    if no_words:
        console.print(f"[yellow]note:[/] --save-attention: no attention maps for {len(no_words)} "
                      f"output(s) with an empty caption (no word to map), e.g. {no_words[0]}")  # fmt: skip
    if not results.written:
        raise _nothing_to_do(results.skipped)
    summary = f"wrote {results.written} image(s) to {out}"
    if results.skipped:
        summary += f"; skipped {len(results.skipped)} bad input(s)"
    typer.echo(summary)


def _check_output_sizes(jobs: list[Job], s: int, skip_bad: bool, bad: list[Skip]) -> list[Job]:
    """Inputs whose output would exceed the pipeline's pixel limit: refused (or skipped)."""
    from tgsr.pipeline import MAX_OUTPUT_PIXELS

    kept = []
    for job in jobs:
        w, h = job.size
        if w * h * s * s <= MAX_OUTPUT_PIXELS:
            kept.append(job)
            continue
        reason = (f"{w}x{h} would give a {w * s}x{h * s} output, above the {MAX_OUTPUT_PIXELS} "
                  "pixel limit; downscale or crop it first")  # fmt: skip
        if not skip_bad:
            raise BadInputError(f"{job.image}: {reason}")
        bad.append((str(job.image), reason))
    return kept


def _run(pipe, jobs: list[Job], results: _Outputs, console: Console, skip_bad: bool,
         save_attention: bool, call: dict) -> list[str]:  # fmt: skip
    """Upscale every job, each output written (and listed) as soon as it is made; a stop (a bad
    input, an error, Ctrl-C) says what was written. -> the outputs with no words to map."""
    from tgsr.pipeline import CaptionWarning

    done, no_words, current = 0, [], jobs[0].image
    try:
        with _Progress(sum(len(j.captions) for j in jobs), console) as bar:
            for job in jobs:
                current = job.image
                bar.update(done, job.image.name)
                try:
                    lq = load_image(job.image)
                except BadInputError as exc:  # e.g. cut short after a readable header
                    if not skip_bad:
                        raise
                    results.skip(str(job.image), _reason(exc, job.image))
                    done += len(job.captions)
                    continue
                outputs = []
                for caption, name in zip(job.captions, output_names(job.stem, len(job.captions)),
                                         strict=True):  # fmt: skip

                    def on_tile(k, n, _done=done, _name=job.image.name):
                        bar.update(_done + k / n, _name, (k, n))

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", CaptionWarning)
                        result = pipe(lq, caption, return_attention=save_attention and pipe.use_text,
                                      output_type="np", progress=on_tile, **call)  # fmt: skip
                    for note in result.warnings:
                        console.print(f"[yellow]warning:[/] {job.image.name}: {note}")
                    sr = result.images[0]
                    outputs.append(sr)
                    entry = {"input": str(job.image), "caption": caption, "output": name,
                             "unknown_words": result.unknown_words[0], "tiled": result.tiled}  # fmt: skip
                    if result.lr_guard_alpha is not None:
                        entry["lr_guard_alpha"] = round(float(result.lr_guard_alpha[0]), 4)
                    with _ctrl_c_held():
                        results.save(name, sr)
                        if save_attention and result.attention is not None:
                            if result.words[0]:
                                entry["attention"] = _save_attention(
                                    results.out, Path(name).stem, sr, result.words[0],
                                    result.attention[0])  # fmt: skip
                            else:  # an empty caption: no word to map
                                no_words.append(name)
                        results.record(entry)
                    done += 1
                    bar.update(done, job.image.name)
                if len(job.captions) > 1:
                    from tgsr.evaluation.figures import edit_rows

                    edit_rows(
                        lq,
                        job.captions,
                        outputs,
                        results.out / f"{job.stem}_grid.png",
                        max_words=pipe.max_words,
                    )
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {results.so_far()}") from None
    except TGSRError as exc:
        msg = str(exc) if str(exc).startswith(str(current)) else f"{current}: {exc}"
        if not isinstance(exc, BadInputError):
            raise TGSRError(f"{msg}; {results.so_far()}") from None
        hint = "" if skip_bad else "; --skip-bad skips bad inputs"
        raise BadInputError(f"{msg}; {results.so_far()}{hint}") from None
    return no_words


def _save_attention(out: Path, stem: str, sr, words: list[str], attn) -> str:
    """``<stem>_attention/<i>_<word>.png`` (heat maps at the SR size) + an overview figure."""
    from tgsr.evaluation.figures import attention_figure
    from tgsr.pipeline import attention_to_image

    folder = out / f"{stem}_attention"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # an earlier run's maps (--overwrite): other words
        if old.name == "overview.png" or old.name[:2].isdigit() and old.name[2:3] == "_":
            old.unlink()
    for i, word in enumerate(words):
        save_png(folder / f"{i:02d}_{word}.png", attention_to_image(attn[i], sr.shape[:2]))
    if words:
        attention_figure(sr, words, attn, folder / "overview.png")
    return folder.name
