"""The gradio web demo: bicubic vs TGSR side by side, word attention maps, caption edits.

``build_demo(pipe)`` returns the ``gr.Blocks`` (nothing is started); :func:`launch` queues it
(one request at a time, a bounded waiting line) and serves it on 127.0.0.1 by default, with
gradio's analytics off and no share link.

Limits (docs/reliability.md measures them under load): uploads above ``max_upload_mb`` are
refused by the server before anything is read; an upload reaches the handler as a file path and
its size in pixels is read from the header, so an image above ``max_side`` (a decompression bomb
included) is refused before it is decoded; at most ``QUEUE_SIZE`` requests wait, the next ones
get gradio's "queue is full" answer at once.
"""

from __future__ import annotations

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
# show small LR inputs and SR outputs enlarged with visible pixels
CSS = "#lq img, #bicubic img, #sr img { image-rendering: pixelated; object-fit: contain; }"


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
    """A word map over the SR image: heat map (min-max normalised per word) blended 50/50."""
    import torch

    from tgsr.pipeline import attention_to_image

    a = attn.detach().float()
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a)
    heat = attention_to_image(a, image.shape[:2]).astype(np.float32)
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


def build_demo(
    pipe,
    *,
    max_side: int = MAX_SIDE,
    max_caption_chars: int = MAX_CAPTION_CHARS,
    max_captions: int = MAX_CAPTIONS,
    examples: bool = True,
):
    """The demo's ``gr.Blocks`` for ``pipe`` (a :class:`~tgsr.pipeline.TGSRPipeline`)."""
    gr = import_gradio()

    def parse_captions(text: str | None) -> list[str]:
        captions = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if len(captions) > max_captions:
            raise gr.Error(f"Please give at most {max_captions} captions (one per line).")
        for c in captions:
            if len(c) > max_caption_chars:
                raise gr.Error(
                    f"A caption is {len(c)} characters long; the limit is {max_caption_chars}. "
                    f"The model reads only the first {pipe.max_words} words anyway."
                )
        return captions or [""]

    def read_upload(path: str) -> np.ndarray:
        """The uploaded file, its size checked from the header before anything is decoded."""
        from PIL import Image, UnidentifiedImageError

        from tgsr.data.images import load_image
        from tgsr.errors import BadInputError

        try:
            with Image.open(path) as img:  # lazy: reads the header only
                w, h = img.size
        except Image.DecompressionBombError:  # Pillow's own header check, far above max_side
            raise gr.Error(too_large("above Pillow's decompression-bomb limit")) from None
        except (OSError, UnidentifiedImageError, ValueError):
            raise gr.Error("This file is not an image the demo can read.") from None
        if max(w, h) > max_side:
            raise gr.Error(too_large(f"{w}x{h} pixels"))
        try:
            return load_image(path)
        except BadInputError as exc:  # corrupt, truncated, NaN floats ...
            reason = str(exc).split(": ", 1)[-1]
            raise gr.Error(f"This image cannot be used: {reason}") from None

    def too_large(size: str) -> str:
        return (
            f"The image is {size}; the demo takes low-resolution inputs up to "
            f"{max_side}x{max_side}. Downscale it, or use `tgsr upscale` for any size."
        )

    def upscale(image, text):
        if image is None:
            raise gr.Error("Please upload an image first.")
        if isinstance(image, (str, os.PathLike)):
            image = read_upload(os.fspath(image))
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)
        h, w = image.shape[:2]
        if max(h, w) > max_side:
            raise gr.Error(too_large(f"{w}x{h} pixels"))
        captions = parse_captions(text)
        bicubic = pipe.bicubic(image, output_type="np")[0]
        results = [
            pipe(image, c, return_attention=pipe.use_text, output_type="np") for c in captions
        ]
        first = results[0]
        sr = first.images[0]
        attention = []
        if pipe.use_text and first.attention is not None:
            attention = [
                (attention_overlay(sr, first.attention[0][i]), word)
                for i, word in enumerate(first.words[0])
            ]
        edits = [
            (r.images[0], c or "(empty caption)") for r, c in zip(results, captions, strict=True)
        ]
        notes = [f"Output: {sr.shape[1]}x{sr.shape[0]} (x{pipe.scale})."]
        if not pipe.use_text:
            notes.append("This model does not use text: the caption is ignored.")
        elif captions == [""]:
            notes.append("Empty caption: the model's text-free output (no word to attend to).")
        for r in results:
            notes += [f"Warning: {n}" for n in r.warnings]
        edits_view = gr.Gallery(value=edits, visible=len(edits) > 1)
        return bicubic, sr, attention, edits_view, "\n\n".join(notes)

    text_note = (
        f"One caption per line (up to {max_captions}) to compare edits; the model reads the "
        f"first {pipe.max_words} words of each."
        if pipe.use_text
        else "This model does not use text."
    )
    with gr.Blocks(title="TGSR demo", analytics_enabled=False) as demo:
        gr.Markdown(
            f"# Text-guided super-resolution (x{pipe.scale})\n"
            f"Upload a low-resolution image (up to {max_side}x{max_side} pixels), describe it, "
            "and compare bicubic with TGSR. The word maps show where each word attends."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath",  # decoded by the handler, after its size check
                    image_mode=None,
                    label="Low-resolution input",
                    height=IMAGE_HEIGHT,
                    elem_id="lq",
                )
                text = gr.Textbox(
                    lines=3,
                    label="Caption(s)",
                    info=text_note,
                    placeholder="a red and cyan striped circle",
                    elem_id="caption",
                )
                button = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column():
                with gr.Row():
                    bicubic = gr.Image(type="numpy", format="png", label="Bicubic",
                                       height=IMAGE_HEIGHT, interactive=False,
                                       elem_id="bicubic")  # fmt: skip
                    sr = gr.Image(type="numpy", format="png", label="TGSR", height=IMAGE_HEIGHT,
                                  interactive=False, elem_id="sr")  # fmt: skip
                notes = gr.Markdown(elem_id="notes")
        attention = gr.Gallery(label="Word attention (first caption)", columns=6, height=220,
                               object_fit="contain", elem_id="attention")  # fmt: skip
        edits = gr.Gallery(label="One output per caption", columns=4, height=300,
                           object_fit="contain", visible=False, elem_id="edits")  # fmt: skip
        button.click(upscale, [image, text], [bicubic, sr, attention, edits, notes])
        if examples:
            # the example PNGs are removed when the process exits (not left in /tmp)
            demo.tgsr_examples_dir = tempfile.TemporaryDirectory(prefix="tgsr-demo-")
            rows = render_examples(pipe, Path(demo.tgsr_examples_dir.name))
            if rows:
                gr.Examples(rows, [image, text], label="Examples (ShapeCaps test scenes)")
    return demo


def launch(
    pipe,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: float = MAX_UPLOAD_MB,
    block: bool = True,
    **build_kw,
):
    """Build, queue and serve the demo. ``block=False`` returns ``(demo, url)`` at once."""
    demo = build_demo(pipe, **build_kw)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    port = port or free_port(host)
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
    return demo, url
