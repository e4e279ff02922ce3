"""Run folder -> pipeline folder (``tgsr export``), and ONNX export.

A training run folder (``docs/architecture.md``, read by :mod:`tgsr.run_folder`) holds the
resolved ``config.yaml``, the EMA generator, a copy of the DAMSM and the training state. Inference
needs only the generator, the DAMSM *text* encoder and the vocabulary: the optimizer states, the
discriminator and the DAMSM image encoder are left behind.

ONNX (``--onnx``): ``DIR/onnx/generator.onnx`` and ``DIR/onnx/text_encoder.onnx``, opset 17,
dynamic batch (and dynamic LR height/width for the generator); captions are padded to
``max_words``. The generator is traced as it runs in PyTorch (its low-pass,
:func:`tgsr.ops.lowpass`, traces as it is). The bi-LSTM runs on packed sequences in PyTorch,
which ONNX cannot express; :meth:`tgsr.models.TextEncoder.forward_padded` computes the same
outputs on the padded batch (see its docstring) and is what ``text_encoder.onnx`` holds.

ONNX inputs / outputs::

    text_encoder.onnx: tokens (B, T) int64, lengths (B,) int64 -> words (B, D, T), sentence (B, D)
    generator.onnx:    lq (B, 3, h, w) float32 in [0, 1], words (B, D, T) float32,
                       token_mask (B, T) bool (True = padding) -> sr (B, 3, h*s, w*s), attn (B, T, H', W')
                       (a no-text generator takes lq only and returns sr only)
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from tgsr.errors import TGSRError
from tgsr.files import new_dir_beside
from tgsr.lr_guard import check_guard_db
from tgsr.pipeline import PIPELINE_NAME, TGSRPipeline, pipeline_from_run

# onnx is an optional dependency (``tgsr[onnx]``): imported by export_onnx only

ONNX_OPSET = 17

__all__ = [
    "ONNX_OPSET",
    "export_onnx",
    "export_pipeline",
    "pipeline_from_run",
]


def export_pipeline(
    run_dir: str | Path, out_dir: str | Path, onnx: bool = False, lr_guard: float | None = None
) -> Path:
    """Write the pipeline folder of ``run_dir`` into ``out_dir`` (and its ONNX files);
    ``lr_guard`` (dB) goes into ``pipeline.json`` (:mod:`tgsr.lr_guard`; the ONNX graphs are
    the bare networks and do not apply it)."""
    run, out = Path(run_dir), Path(out_dir)
    if out.exists() and out.resolve() == run.resolve():
        raise TGSRError("--out must differ from the run folder")
    if out.is_file():
        raise TGSRError(f"{out} is a file; --out must be a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / PIPELINE_NAME).is_file():
        raise TGSRError(f"{out} exists, is not empty and is not a pipeline folder")
    if lr_guard is not None:
        try:
            lr_guard = check_guard_db(lr_guard, zero_is_off=False)
        except ValueError as exc:
            raise TGSRError(str(exc)) from None
    pipe = pipeline_from_run(run)
    if lr_guard is not None:
        pipe.info.lr_guard = lr_guard
    # written into a fresh folder beside OUT, then swapped in: a failed export leaves OUT as it
    # was, a finished one holds only the new model (no old text_encoder/, vocab.json, onnx/)
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target.exists() and (cwd == target or cwd.is_relative_to(target)):
        raise TGSRError(f"--out {out} is the current folder (or holds it): run the export from "
                        "another folder")  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_dir_beside(target)
    try:
        pipe.save_pretrained(tmp)
        if onnx:
            export_onnx(pipe, tmp / "onnx")
        _keep_user_files(target, tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# what an export writes into a pipeline folder; anything else there (a README, a model card)
# is the user's and moves into the new folder
EXPORT_ENTRIES = (PIPELINE_NAME, "generator", "text_encoder", "vocab.json", "onnx")


def _keep_user_files(old: Path, new: Path) -> None:
    if not old.is_dir():
        return
    for item in old.iterdir():
        if item.name in EXPORT_ENTRIES or (new / item.name).exists():
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, new / item.name, symlinks=True)
        else:
            shutil.copy2(item, new / item.name, follow_symlinks=False)


def _swap_in(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``: the old ``target`` is renamed aside, ``new`` renamed
    into its place, then the old one removed (two renames: if the process dies between them,
    the old folder is still there under ``.NAME.*.old``)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = new_dir_beside(target, "old")
    os.replace(target, old)  # onto the empty folder just made: atomic on POSIX
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- ONNX


class _TextEncoderGraph(nn.Module):
    """The text encoder's ONNX-friendly forward (:meth:`~tgsr.models.TextEncoder.forward_padded`)
    as a module's ``forward``, for the tracer."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, tokens, lengths):
        return self.encoder.forward_padded(tokens, lengths)


class _GeneratorGraph(nn.Module):
    """Generator forward with plain tensor outputs: (sr, attn of the last TAM) or sr."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, lq, words=None, token_mask=None):
        out = self.generator(lq, words, None, token_mask, sr_only=True)
        if self.generator.use_text:
            return out.sr, out.attn[-1]
        return out.sr


def export_onnx(pipe: TGSRPipeline, out_dir: str | Path, opset: int = ONNX_OPSET) -> list[Path]:
    """Export the generator (and the text encoder) of ``pipe`` to ``out_dir``; float32, CPU."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise TGSRError("ONNX export needs onnx: pip install 'tgsr[onnx]'") from None
    if opset < 17:
        raise TGSRError(f"ONNX opset must be >= 17, got {opset}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = pipe.float32_generator().eval()  # the exact float32 weights, on the CPU
    size = max(pipe.info.lq_size, 8)
    lq = torch.rand(2, 3, size, size)
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation / LSTM batch notes
        if pipe.use_text:
            encoder = _TextEncoderGraph(pipe.text_encoder.float().cpu().eval()).eval()
            t = pipe.max_words
            tokens = torch.randint(2, len(pipe.vocab), (2, t))
            lengths = torch.tensor([t, max(1, t // 2)])
            tokens[torch.arange(t)[None] >= lengths[:, None]] = 0
            path = out / "text_encoder.onnx"
            torch.onnx.export(
                encoder,
                (tokens, lengths),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["tokens", "lengths"],
                output_names=["words", "sentence"],
                dynamic_axes={"tokens": {0: "batch"}, "lengths": {0: "batch"},
                              "words": {0: "batch"}, "sentence": {0: "batch"}},
            )  # fmt: skip
            written.append(path)
            with torch.no_grad():
                words, _ = encoder(tokens, lengths)
            mask = torch.arange(t)[None] >= lengths[:, None]
            args = (lq, words, mask)
            names = ["lq", "words", "token_mask"]
            outputs = ["sr", "attn"]
            axes = {"lq": {0: "batch", 2: "height", 3: "width"}, "words": {0: "batch"},
                    "token_mask": {0: "batch"}, "sr": {0: "batch", 2: "out_height", 3: "out_width"},
                    "attn": {0: "batch", 2: "attn_height", 3: "attn_width"}}  # fmt: skip
        else:
            args, names, outputs = (lq,), ["lq"], ["sr"]
            axes = {"lq": {0: "batch", 2: "height", 3: "width"},
                    "sr": {0: "batch", 2: "out_height", 3: "out_width"}}  # fmt: skip
        path = out / "generator.onnx"
        torch.onnx.export(
            _GeneratorGraph(generator).eval(),  # the exporter restores the wrapper's mode
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
        )
        written.append(path)
    pipe.generator.eval()
    if pipe.text_encoder is not None:
        pipe.text_encoder.to(pipe.device).eval()
    return written
