"""`tgsr upscale`: a thin command over :mod:`tgsr.pipeline`. The inputs are read and checked
before the model loads (:mod:`tgsr.cli.upscale_inputs`); here the run: outputs and their
``results.jsonl`` index written one by one, progress, and stops by Ctrl-C or SIGTERM that keep
every output with its index line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import warnings
from pathlib import Path

import typer
from rich.console import Console

from tgsr.cli.upscale_inputs import (
    INDEX_NAME,
    Job,
    Skip,
    check_inputs,
    check_options,
    check_output_sizes,
    grid_name,
    nothing_to_do,
    output_names,
    pick_device,
    print_skipped,
    reason,
)
from tgsr.data.images import load_image, save_png
from tgsr.errors import BadInputError, Interrupted, TGSRError

# Commands import what needs torch (torch, tgsr.pipeline, tgsr.export, tgsr.evaluation.figures,
# with matplotlib) inside their bodies: torch takes ~3-4 s to import and `tgsr --help` or a
# mistyped option should answer at once. tgsr.demo needs gradio, an optional dependency.

__all__ = ["pick_device", "upscale"]

# seconds between two plain progress lines when stderr is not a terminal (logs, pipes)
PLAIN_PROGRESS_EVERY_S = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        with self._writing(name):
            save_png(self.out / name, img)
        self.written += 1

    def save_grid(self, name: str, lq, captions: list[str], outputs: list, max_words: int):
        """``<stem>_grid.png``: the LR input beside every output (written as save_png writes)."""
        from tgsr.evaluation.figures import edit_rows

        with self._writing(name):
            edit_rows(lq, captions, outputs, self.out / name, max_words=max_words)

    @contextlib.contextmanager
    def _writing(self, name: str):
        try:
            yield
        except OSError as exc:
            raise TGSRError(f"{self.out / name}: cannot write it ({exc.strerror or exc})") from None

    def record(self, entry: dict) -> None:
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()

    def skip(self, where: str, why: str) -> None:
        self.skipped.append((where, why))
        self._skip_line(where, why)

    def _skip_line(self, where: str, why: str) -> None:
        if self._index is None:
            self._pending.append((where, why))
        else:
            self.record({"input": where, "skipped": why})

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
        for where, why in pending:
            self._skip_line(where, why)

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


# ----------------------------------------------------------------------------- stop signals


def _stop(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_stops_the_run():
    """SIGTERM (a timeout, ``docker stop``, SLURM) stops the run as Ctrl-C does: it raises
    KeyboardInterrupt, so the run says what it wrote; its default would kill it silently. A
    SIGTERM the parent set to be ignored stays ignored."""
    try:
        old = signal.getsignal(signal.SIGTERM)
        if old != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread: signals go elsewhere
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _signals_held():
    """Holds Ctrl-C and SIGTERM back while an output (and a grid) and its results.jsonl line are
    written, so that a stopped run lists every output it wrote and never leaves one unlisted;
    a held signal is delivered right after, to the handler in place before."""
    held: list[int] = []
    try:
        old = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
               for sig in STOP_SIGNALS}  # fmt: skip
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            if callable(old[sig]):
                old[sig](sig, None)  # Python's default SIGINT handler raises KeyboardInterrupt
            elif old[sig] == signal.SIG_DFL:
                signal.raise_signal(sig)


# ----------------------------------------------------------------------------- progress


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
        from tgsr.training.common import duration

        info = f"{name} (tile {tile[0]}/{tile[1]})" if tile else name
        self.bar.update(self.task, completed=done, info=info)
        now = time.monotonic()
        if self.plain and done and now - self.last >= PLAIN_PROGRESS_EVERY_S:
            self.last = now
            elapsed = now - self.start
            left = elapsed * (self.total - done) / done
            line = (f"upscale: {int(done)}/{self.total} output(s), {info}, {duration(elapsed)} "
                    f"elapsed, about {duration(left)} left")  # fmt: skip
            self.console.print(line, markup=False, highlight=False)


# ----------------------------------------------------------------------------- the command


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
    console = Console(stderr=True, soft_wrap=True)
    call = check_options(tile, overlap, max_memory, lr_guard)
    captions = list(text or [])
    jobs, bad = check_inputs(list(inputs), captions, out, overwrite, save_attention, skip_bad,
                             console)  # fmt: skip
    pipe = _load(model, pick_device(device), dtype, compile_, scale, tile, overlap)
    jobs = check_output_sizes(jobs, pipe.scale, skip_bad, bad)
    if not jobs:
        print_skipped(console, bad)
        raise nothing_to_do(bad)
    _notes(console, pipe, captions, jobs, save_attention)
    results = _Outputs(out, bad)
    try:
        no_words = _run(pipe, jobs, results, console, skip_bad, save_attention, call)
    finally:
        results.close()
    _summary(console, results, no_words)


def _load(model: Path, dev, dtype: str, compile_: bool, scale, tile, overlap):
    """The pipeline, and the checks that need it: --scale, --tile against its default overlap."""
    from tgsr.pipeline import TGSRPipeline

    pipe = TGSRPipeline.from_pretrained(model, device=dev, dtype=dtype, compile=compile_)
    if scale is not None and scale != pipe.scale:
        raise TGSRError(f"--scale {scale} does not match the model: {model} upscales x{pipe.scale}")
    if tile and overlap is None and 2 * pipe.receptive_radius >= tile:
        raise TGSRError(f"--tile {tile} must be larger than the default --overlap of this model "
                        f"({2 * pipe.receptive_radius}: twice its receptive-field radius); "
                        f"give a larger --tile, or --overlap below {tile}")  # fmt: skip
    return pipe


def _notes(console: Console, pipe, captions: list[str], jobs: list[Job], save_attention: bool):
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


def _summary(console: Console, results: _Outputs, no_words: list[str]) -> None:
    print_skipped(console, results.skipped)
    if no_words:
        console.print(f"[yellow]note:[/] --save-attention: no attention maps for {len(no_words)} "
                      f"output(s) with an empty caption (no word to map), e.g. {no_words[0]}")  # fmt: skip
    if not results.written:
        raise nothing_to_do(results.skipped)
    summary = f"wrote {results.written} image(s) to {results.out}"
    if results.skipped:
        summary += f"; skipped {len(results.skipped)} bad input(s)"
    typer.echo(summary)


# ----------------------------------------------------------------------------- the run


def _run(pipe, jobs: list[Job], results: _Outputs, console: Console, skip_bad: bool,
         save_attention: bool, call: dict) -> list[str]:  # fmt: skip
    """Upscale every job, each output written (and listed) as soon as it is made; a stop (a bad
    input, an error, Ctrl-C, SIGTERM) says what was written. -> the outputs with no words to
    map."""
    done, no_words, current = 0, [], jobs[0].image
    try:
        with (
            _sigterm_stops_the_run(),
            _Progress(sum(len(j.captions) for j in jobs), console) as bar,
        ):
            for job in jobs:
                current = job.image
                bar.update(done, job.image.name)
                try:
                    lq = load_image(job.image)
                except BadInputError as exc:  # e.g. cut short after a readable header
                    if not skip_bad:
                        raise
                    results.skip(str(job.image), reason(exc, job.image))
                else:
                    no_words += _upscale_job(pipe, job, lq, results, console, bar, done,
                                             save_attention, call)  # fmt: skip
                done += len(job.captions)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {results.so_far()}") from None
    except TGSRError as exc:
        msg = str(exc) if str(exc).startswith(str(current)) else f"{current}: {exc}"
        if not isinstance(exc, BadInputError):
            raise TGSRError(f"{msg}; {results.so_far()}") from None
        hint = "" if skip_bad else "; --skip-bad skips bad inputs"
        raise BadInputError(f"{msg}; {results.so_far()}{hint}") from None
    return no_words


def _upscale_job(pipe, job: Job, lq, results: _Outputs, console: Console, bar: _Progress,
                 done: int, save_attention: bool, call: dict) -> list[str]:  # fmt: skip
    """One output per caption, each written with its index line while stop signals are held;
    the grid of a job with several captions is written with its last output. -> the outputs
    with no words to map."""
    from tgsr.pipeline import CaptionWarning

    names = output_names(job.stem, len(job.captions))
    outputs, no_words = [], []
    for k, (caption, name) in enumerate(zip(job.captions, names, strict=True)):

        def on_tile(i, n, _done=done + k):
            bar.update(_done + i / n, job.image.name, (i, n))

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
        with _signals_held():
            results.save(name, sr)
            if save_attention and result.attention is not None:
                if result.words[0]:
                    entry["attention"] = _save_attention(results.out, Path(name).stem, sr,
                                                         result.words[0], result.attention[0])  # fmt: skip
                else:  # an empty caption: no word to map
                    no_words.append(name)
            results.record(entry)
            if (grid := grid_name(job)) and len(outputs) == len(names):
                results.save_grid(grid, lq, job.captions, outputs, pipe.max_words)
        bar.update(done + k + 1, job.image.name)
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
