"""The gradio web demo: bicubic vs TGSR side by side, word attention maps, caption edits.

``build_demo(pipe)`` returns the ``gr.Blocks`` (nothing is started); :func:`launch` queues it
(one request at a time, a bounded waiting line) and serves it on 127.0.0.1 by default, with
gradio's analytics off and no share link. :func:`make_upscale` is the click handler alone (the
tests call it directly).

Limits (docs/reliability.md measures them under load): uploads above ``max_upload_mb`` are
refused by the server before anything is read; an upload reaches the handler as a file path,
undecoded (gradio does not open it), and its size in pixels is read from the header, so an image
above ``max_side`` (a decompression bomb included) is refused before it is decoded and any file
that is not a readable image gets the demo's one-line message; at most ``QUEUE_SIZE`` requests
wait, the next ones get gradio's "queue is full" answer at once.

Bad input (``gr.Error`` raised by the handler) logs one line on the server, no traceback; an
unexpected exception keeps gradio's traceback. Every click clears the previous outputs first, so
an error never leaves an older result on screen.
"""

from __future__ import annotations

import html
import logging
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from tgsr.errors import TGSRError

MAX_SIDE = 256  # LR pixels per side accepted by the demo (the CLI tiles any size)
MAX_CAPTION_CHARS = 200
MAX_CAPTIONS = 4
MAX_UPLOAD_MB = 10.0
QUEUE_SIZE = 16
EXAMPLE_SEEDS = (3, 11, 25, 42)
IMAGE_HEIGHT = 280
ATTENTION_COLUMNS = 6
# show small LR inputs and SR outputs enlarged with visible pixels
CSS = (
    "#lq img, #bicubic img, #sr img { image-rendering: pixelated; object-fit: contain; }"
    # galleries as tall as their rows (gradio keeps 450 px: a row of word maps left a gap)
    " #attention .fixed-height, #edits .fixed-height { min-height: 0; }"
)
ATTENTION_NOTE = (
    "Word maps share one scale, as `tgsr upscale --save-attention` writes them: the share of "
    "each pixel's attention that goes to the word (0 to 1), so a word the model ignores stays dark."
)

log = logging.getLogger("tgsr.demo")


def import_gradio():
    """gradio, imported lazily with analytics off, or a one-line install hint."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise TGSRError("the web demo needs gradio: pip install 'tgsr[demo]'") from None
    return gr


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def attention_overlay(image: np.ndarray, attn) -> np.ndarray:
    """A word map over the SR image: heat map blended 50/50. The map keeps its values (in
    [0, 1], not renormalised per word), so the maps of different words compare."""
    from tgsr.pipeline import attention_to_image

    heat = attention_to_image(attn, image.shape[:2]).astype(np.float32)
    return np.floor(0.5 * image.astype(np.float32) + 0.5 * heat + 0.5).astype(np.uint8)


def render_examples(pipe, folder: Path, seeds=EXAMPLE_SEEDS) -> list[list]:
    """A few ShapeCaps test scenes at the model's training size, degraded to LR PNGs.

    Returns ``[[path, caption], ...]``; empty when the benchmark cannot render at this size."""
    import torch

    from tgsr.data.degradations import degrade, image_to_tensor, tensor_to_image
    from tgsr.data.images import save_png
    from tgsr.data.synthetic import eval_caption, render, sample_scene, scene_seed

    size = pipe.info.lq_size * pipe.scale
    examples = []
    try:
        for seed in seeds:
            attrs = sample_scene(scene_seed(0, seed), "test", size=size)
            hr = image_to_tensor(render(attrs, size))
            with torch.no_grad():
                lq = tensor_to_image(degrade(hr, pipe.scale, pipe.info.degradation).clamp(0, 1))
            path = folder / f"shapecaps_test_{seed}.png"
            save_png(path, lq)
            examples.append([str(path), eval_caption(attrs)])
    except (ValueError, KeyError):
        return []
    return examples


def refuse(gr, message: str):
    """A ``gr.Error`` for bad input: shown to the user, one line in the server log."""
    log.warning("tgsr demo: refused a request: %s", message)
    return gr.Error(message, print_exception=False)


def upload_input(gr, **kw):
    """A ``gr.Image`` whose upload reaches the handler as its file path, undecoded.

    gradio's own ``gr.Image(type="filepath")`` opens the file with Pillow first, so a file that
    is not an image got gradio's internal error (with server paths) before the demo saw it. The
    instance's ``preprocess`` is replaced (a subclass would make gradio write a ``.pyi`` file
    next to this module)."""
    image = gr.Image(type="filepath", **kw)
    image.preprocess = lambda payload: None if payload is None else payload.path
    return image


def make_upscale(
    pipe,
    gr=None,
    *,
    max_side: int = MAX_SIDE,
    max_caption_chars: int = MAX_CAPTION_CHARS,
    max_captions: int = MAX_CAPTIONS,
):
    """The click handler: ``upscale(image, text) -> (bicubic, sr, attention, edits, notes)``.

    ``image`` is a file path (or an array); ``text`` holds one caption per line."""
    gr = gr or import_gradio()

    def parse_captions(text: str | None) -> list[str]:
        if not pipe.use_text:
            return [""]
        captions = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if len(captions) > max_captions:
            raise refuse(gr, f"Please give at most {max_captions} captions (one per line).")
        for c in captions:
            if len(c) > max_caption_chars:
                raise refuse(
                    gr,
                    f"A caption is {len(c)} characters long; the limit is {max_caption_chars}. "
                    f"The model reads only the first {pipe.max_words} words anyway.",
                )
        return captions or [""]

    def is_empty(caption: str) -> bool:
        """No word for the model (punctuation only counts as empty): the pipeline's rule."""
        from tgsr.text import tokenize

        return not tokenize(caption, lowercase=pipe.vocab.lowercase)

    def read_upload(path: str) -> np.ndarray:
        """The uploaded file, its size checked from the header before anything is decoded."""
        from PIL import Image, UnidentifiedImageError

        from tgsr.data.images import load_image
        from tgsr.errors import BadInputError

        try:
            with Image.open(path) as img:  # lazy: reads the header only
                w, h = img.size
        except Image.DecompressionBombError:  # Pillow's own header check, far above max_side
            raise refuse(gr, too_large("above Pillow's decompression-bomb limit")) from None
        except (OSError, UnidentifiedImageError, ValueError):
            raise refuse(gr, "This file is not an image the demo can read.") from None
        if max(w, h) > max_side:
            raise refuse(gr, too_large(f"{w}x{h} pixels"))
        try:
            return load_image(path)
        except BadInputError as exc:  # corrupt, truncated, NaN floats ...
            reason = str(exc).split(": ", 1)[-1]
            raise refuse(gr, f"This image cannot be used: {reason}") from None

    def too_large(size: str) -> str:
        return (
            f"The image is {size}; the demo takes low-resolution inputs up to "
            f"{max_side}x{max_side}. Downscale it, or use `tgsr upscale` for any size."
        )

    def upscale(image, text=""):
        if image is None:
            raise refuse(gr, "Please upload an image first.")
        if isinstance(image, (str, os.PathLike)):
            image = read_upload(os.fspath(image))
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
        h, w = image.shape[:2]
        if max(h, w) > max_side:
            raise refuse(gr, too_large(f"{w}x{h} pixels"))
        captions = parse_captions(text)
        bicubic = pipe.bicubic(image, output_type="np")[0]
        results = [
            pipe(image, c, return_attention=pipe.use_text, output_type="np") for c in captions
        ]
        first = results[0]
        sr = first.images[0]
        notes = [f"Output: {sr.shape[1]}x{sr.shape[0]} (x{pipe.scale})."]
        if not pipe.use_text:
            return bicubic, sr, [], gr.Gallery(value=[], visible=False), notes[0]
        empty = [is_empty(c) for c in captions]
        attention = []
        if first.attention is not None:
            attention = [
                (attention_overlay(sr, first.attention[0][i]), word)
                for i, word in enumerate(first.words[0])
            ]
        edits = [
            (r.images[0], "(empty caption)" if e else c)
            for r, c, e in zip(results, captions, empty, strict=True)
        ]
        if len(captions) == 1 and empty[0]:
            notes.append("Empty caption: the model's text-free output (no word to attend to).")
        else:
            notes += [
                f"Caption {i + 1} has no words: its output is the model's text-free one."
                for i, e in enumerate(empty)
                if e
            ]
        if attention:
            notes.append(ATTENTION_NOTE)
        for r in results:  # html-escaped: "<unk>" is not a tag
            notes += [f"Warning: {html.escape(n)}" for n in r.warnings]
        edits_view = gr.Gallery(value=edits, visible=len(edits) > 1)
        return bicubic, sr, attention, edits_view, "\n\n".join(notes)

    return upscale


def clear_outputs(gr=None):
    """What a click shows before the handler answers: no image, no map, no note."""
    gr = gr or import_gradio()
    return None, None, [], gr.Gallery(value=[], visible=False), ""


def build_demo(
    pipe,
    *,
    max_side: int = MAX_SIDE,
    max_caption_chars: int = MAX_CAPTION_CHARS,
    max_captions: int = MAX_CAPTIONS,
    examples: bool = True,
):
    """The demo's ``gr.Blocks`` for ``pipe`` (a :class:`~tgsr.pipeline.TGSRPipeline`).

    A no-text model (``pipe.use_text`` false) gets no caption box, no word maps and no caption
    comparison: the page is a plain super-resolution demo."""
    gr = import_gradio()
    use_text = pipe.use_text
    upscale = make_upscale(pipe, gr, max_side=max_side, max_caption_chars=max_caption_chars,
                           max_captions=max_captions)  # fmt: skip

    if use_text:
        header = (
            f"# Text-guided super-resolution (x{pipe.scale})\n"
            f"Upload a low-resolution image (up to {max_side}x{max_side} pixels), describe it, "
            "and compare bicubic with TGSR. The word maps show where each word attends."
        )
        sr_label = "TGSR"
    else:
        header = (
            f"# Super-resolution (x{pipe.scale}), no-text model\n"
            f"Upload a low-resolution image (up to {max_side}x{max_side} pixels) and compare "
            "bicubic with the model's output. This model was trained without text: it takes "
            "no caption."
        )
        sr_label = "Super-resolution (no-text model)"
    with gr.Blocks(title="TGSR demo", analytics_enabled=False) as demo:
        gr.Markdown(header)
        with gr.Row():
            with gr.Column():
                image = upload_input(  # the handler gets the path, undecoded
                    gr,
                    image_mode=None,
                    label="Low-resolution input",
                    height=IMAGE_HEIGHT,
                    elem_id="lq",
                )
                text = gr.Textbox(
                    lines=3,
                    label="Caption(s)",
                    info=f"One caption per line (up to {max_captions}) to compare edits; the "
                    f"model reads the first {pipe.max_words} words of each.",
                    placeholder="a red and cyan striped circle",
                    elem_id="caption",
                    visible=use_text,
                )
                button = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column():
                with gr.Row():
                    bicubic = gr.Image(type="numpy", format="png", label="Bicubic",
                                       height=IMAGE_HEIGHT, interactive=False,
                                       elem_id="bicubic")  # fmt: skip
                    sr = gr.Image(type="numpy", format="png", label=sr_label,
                                  height=IMAGE_HEIGHT, interactive=False, elem_id="sr")  # fmt: skip
                notes = gr.Markdown(elem_id="notes")
        # PNG, not gradio's default WebP: lossy WebP greys out thin coloured stripes
        # height "auto": every word shows, no inner scroll
        attention = gr.Gallery(label="Word attention (first caption)", format="png",
                               columns=ATTENTION_COLUMNS, height="auto",
                               object_fit="contain", allow_preview=False, visible=use_text,
                               elem_id="attention")  # fmt: skip
        edits = gr.Gallery(label="One output per caption", format="png", columns=max_captions,
                           height="auto", object_fit="contain", allow_preview=False,
                           visible=False, elem_id="edits")  # fmt: skip
        outputs = [bicubic, sr, attention, edits, notes]
        # clear first: an error then leaves no earlier result on screen
        button.click(lambda: clear_outputs(gr), None, outputs, queue=False).then(
            upscale, [image, text], outputs
        )
        if examples:
            # the example PNGs are removed when the process exits (not left in /tmp)
            demo.tgsr_examples_dir = tempfile.TemporaryDirectory(prefix="tgsr-demo-")
            rows = render_examples(pipe, Path(demo.tgsr_examples_dir.name))
            if rows and use_text:
                gr.Examples(rows, [image, text], label="Examples (ShapeCaps test scenes)",
                            elem_id="examples")  # fmt: skip
            elif rows:
                gr.Examples([r[:1] for r in rows], [image], elem_id="examples",
                            label="Examples (ShapeCaps test scenes)")  # fmt: skip
    return demo


def launch(
    pipe,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = MAX_UPLOAD_MB,
    block: bool = True,
    **build_kw,
):
    """Build, queue and serve the demo. ``block=False`` returns ``(demo, url)`` at once.

    A busy ``port`` raises :class:`~tgsr.errors.TGSRError` (``port=0``: any free port)."""
    if not (0 < max_upload_mb < float("inf")):
        raise TGSRError(f"max_upload_mb must be a positive number, got {max_upload_mb}")
    demo = build_demo(pipe, **build_kw)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    requested = port
    port = port or free_port(host)
    try:
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            max_file_size=int(max_upload_mb * 1024 * 1024),
            show_error=True,
            css=CSS,
            prevent_thread_lock=not block,
            quiet=not block,
        )
    except OSError as exc:
        if "Cannot find empty port" not in str(exc):
            raise
        if requested == 0:  # the free port was taken in between: unlikely, say so plainly
            raise TGSRError(f"port {port} was taken while the demo started: try again") from None
        raise TGSRError(f"port {port} is in use: pass another --port (0: any free port)") from None
    return demo, url
