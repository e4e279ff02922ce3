"""``TGSRPipeline``: load a trained model folder and upscale images with a caption.

::

    from tgsr import TGSRPipeline

    pipe = TGSRPipeline.from_pretrained("out/model")          # a pipeline folder (or a run folder)
    result = pipe(image, "a red and cyan striped circle", return_attention=True)
    result.image.save("sr.png")
    result.words, result.attention[0].shape                   # ['a', 'red', ...], (n_words, H, W)

Inputs: a PIL image, a numpy ``uint8 (H, W, 3)`` (or ``(H, W)`` grey) array, or a torch float
tensor in [0, 1] shaped ``(3, H, W)`` or ``(B, 3, H, W)`` (a batch; a Python list of images is
refused: one call per image). A call whose outputs would exceed ``MAX_OUTPUT_PIXELS`` (2**28, as
``tgsr upscale``) is refused before any work. The output is ``scale`` times the input
size, as PIL images by default (``output_type="np"``: uint8 arrays, ``"pt"``: a float tensor
``(B, 3, H, W)`` clamped to [0, 1]).

Text: the caption is tokenized with the folder's vocabulary; only the first ``max_words`` words are
read (deterministic, as at evaluation). Unknown words become ``<unk>`` and produce a
:class:`CaptionWarning` (Python ``warnings``) and an entry in ``result.warnings``.

**Empty caption.** Allowed. The text encoder gives zero features for a caption with no word and
every word position is padding, so the Text Attention Module attends to nothing: its attended
feature is exactly zero and its maps are zero. The generator still runs its text branch with a
zero text feature, i.e. the output is the model's *text-free* prediction (not the no-text
baseline, which is a different network). ``result.words`` is then empty.

**No-text model** (``use_text: false`` in ``pipeline.json``, the baseline): the caption is ignored.

Inputs whose activations would exceed a memory budget (``max_memory``, 2 GiB by default) are
processed in overlapping tiles, batched into as few generator calls as the budget allows
(:mod:`tgsr.tiling`); the overlap is twice the generator's computed receptive-field radius, so the
tiled output equals the untiled one (coordinate channels included: each tile gets its place in the
image). ``dtype="auto"`` (the default) runs the generator in bf16 where that is faster (GPUs with
bf16, CPUs with AMX / AVX-512-BF16) and in float32 elsewhere. ``compile=True`` runs it through
``torch.compile`` (:mod:`tgsr.compiled`; eager, with a logged warning, where that fails).
``lr_guard=DB`` (or ``pipeline.json``'s ``lr_guard``) keeps every output within ``DB`` dB of its
input (:mod:`tgsr.lr_guard`).
"""

from __future__ import annotations

import copy
import json
import operator
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from tgsr._version import __version__
from tgsr.compiled import CompiledForward
from tgsr.data.degradations import imresize
from tgsr.data.images import _to_rgb
from tgsr.device import fast_bf16
from tgsr.errors import BadInputError, ModelFormatError, TGSRError
from tgsr.files import atomic_write
from tgsr.lr_guard import check_guard_db
from tgsr.lr_guard import lr_guard as apply_lr_guard
from tgsr.models.serialization import (
    load_generator,
    load_text_encoder,
    save_generator,
    save_text_encoder,
)
from tgsr.run_folder import read_run
from tgsr.text import Vocabulary, tokenize
from tgsr.tiling import (
    TilePlan,
    check_tile_options,
    parse_memory,
    peak_activation_bytes,
    plan_tiles,
    receptive_radius,
    tiled_apply,
)

# matplotlib (about 1 s to import) is imported by attention_to_image only: upscaling never needs it

PIPELINE_FORMAT_VERSION = 1
PIPELINE_NAME = "pipeline.json"
OutputType = Literal["pil", "np", "pt"]

__all__ = [
    "PIPELINE_FORMAT_VERSION",
    "CaptionWarning",
    "PipelineInfo",
    "TGSROutput",
    "TGSRPipeline",
    "DEFAULT_MAX_MEMORY",
    "MAX_OUTPUT_PIXELS",
    "output_size_error",
    "fast_bf16",
    "pipeline_from_run",
    "resolve_dtype",
]


class CaptionWarning(UserWarning):
    """A caption the model cannot fully read (unknown words, too long)."""


def resolve_dtype(dtype: torch.dtype | str, device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"`` -> bf16 where :func:`fast_bf16`, else float32; names and dtypes are checked."""
    if isinstance(dtype, str):
        names = {"float32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16}  # fmt: skip
        if dtype == "auto":
            return torch.bfloat16 if fast_bf16(device) else torch.float32
        if dtype not in names:
            raise TGSRError(f"dtype must be auto, float32 or bf16, got {dtype!r}")
        dtype = names[dtype]
    if dtype not in (torch.float32, torch.bfloat16):
        raise TGSRError(f"dtype must be float32 or bfloat16, got {dtype}")
    return dtype


def cast_generator(generator: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``generator.to(dtype)`` with its normalisation layers kept in float32: they normalise in
    float32 (``MaskedBatchNorm`` casts its input up; a bf16 BatchNorm2d input with float32
    statistics is a supported mixed case), so the statistics stay exact. In place; returned."""
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    # their float32 values, not bf16-rounded ones brought back to float32
    kept = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in norms]
    generator.to(dtype)
    if dtype != torch.float32:
        for m, state in zip(norms, kept, strict=True):
            m.float().load_state_dict(state)
    return generator


DEFAULT_MAX_MEMORY = 2 * 2**30  # activation bytes of one generator call (tiles beyond it)
# output pixels of one call (all images of a batch together): 2**28 = 16384x16384, 0.75 GiB as
# uint8 RGB; larger requests are refused before any work (``max_output_pixels=`` raises it)
MAX_OUTPUT_PIXELS = 2**28


def output_size_error(w: int, h: int, scale: int, limit: int, n: int = 1) -> str | None:
    """The output-size rule (its condition and its words, in one place; ``tgsr upscale`` checks
    it from the files' headers): None when ``n`` inputs of ``w`` x ``h`` give at most ``limit``
    output pixels at ``scale``, else why not."""
    if n * w * h * scale * scale <= limit:
        return None
    images = f"{n} images of " if n > 1 else ""
    return (f"{images}{w}x{h} would give {w * scale}x{h * scale} output(s), above the {limit} "
            "pixel limit; downscale or crop the input first")  # fmt: skip


@dataclass
class PipelineInfo:
    """The content of ``pipeline.json``."""

    scale: int
    lq_size: int  # the LR side the model was trained on
    max_words: int
    degradation: str = "bicubic"
    use_text: bool = True
    tile: int | None = None  # tile side (LR px) for large inputs; None: planned per input
    tile_overlap: int | None = None  # None: twice the receptive-field radius
    name: str = "tgsr"
    # keep outputs within this many dB of the LR input (tgsr.lr_guard); None: off
    lr_guard: float | None = None
    source: str | None = None  # the run folder it was exported from
    tgsr_version: str | None = None

    def to_json(self) -> dict:
        return {"format_version": PIPELINE_FORMAT_VERSION, **asdict(self)}

    @classmethod
    def load(cls, path: Path) -> PipelineInfo:
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFormatError(
                f"{path.parent}: not a tgsr pipeline folder (no {PIPELINE_NAME}; make one with "
                "`tgsr export RUN_DIR --out DIR`)"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise ModelFormatError(f"{path}: expected a JSON object")
        version = payload.pop("format_version", None)
        if version != PIPELINE_FORMAT_VERSION:
            raise ModelFormatError(
                f"{path}: unsupported format_version {version!r} "
                f"(this tgsr reads {PIPELINE_FORMAT_VERSION})"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - names)
        if unknown:
            raise ModelFormatError(f"{path}: unknown key(s) {', '.join(unknown)}")
        missing = [k for k in ("scale", "lq_size", "max_words") if k not in payload]
        if missing:
            raise ModelFormatError(f"{path}: missing key(s) {', '.join(missing)}")
        # every field checked here, so a bad value is one line naming it, not a failure later
        least = {"scale": 1, "lq_size": 1, "max_words": 1, "tile": 4, "tile_overlap": 1}
        for key, low in least.items():
            value = payload.get(key)
            if value is None and key in ("tile", "tile_overlap"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                null = " (or null)" if key in ("tile", "tile_overlap") else ""
                raise ModelFormatError(
                    f"{path}: {key} must be an integer >= {low}{null}, got {value!r}"
                )
        if not isinstance(payload.get("use_text", True), bool):
            raise ModelFormatError(f"{path}: use_text must be true or false")
        if payload.get("degradation", "bicubic") not in ("bicubic", "bilinear"):
            raise ModelFormatError(
                f"{path}: degradation must be bicubic or bilinear, got {payload['degradation']!r}"
            )
        for key in ("name", "source", "tgsr_version"):
            value = payload.get(key)
            if (
                key in payload
                and not isinstance(value, str)
                and (key == "name" or value is not None)
            ):
                raise ModelFormatError(f"{path}: {key} must be a string, got {value!r}")
        try:
            check_guard_db(payload.get("lr_guard"), zero_is_off=False)
        except ValueError as exc:
            raise ModelFormatError(f"{path}: {exc} (or null)") from None
        return cls(**payload)


@dataclass
class TGSROutput:
    """What :meth:`TGSRPipeline.__call__` returns."""

    images: Any  # list of PIL images / uint8 arrays, or a (B, 3, H, W) float tensor
    captions: list[str]
    words: list[list[str]]  # the words the model read, per image (first max_words)
    unknown_words: list[list[str]] = field(default_factory=list)  # per image
    attention: list[torch.Tensor] | None = None  # per image (n_words, H', W') float CPU, or None
    warnings: list[str] = field(default_factory=list)
    tiled: bool = False
    # per image, how far the LR guard pulled the output toward its input (0: not at all)
    lr_guard_alpha: torch.Tensor | None = None

    @property
    def image(self):
        """The first (or only) output image."""
        return self.images[0]


# ----------------------------------------------------------------------------- image conversion


# float tensor inputs may stray this far outside [0, 1]: bicubic overshoot (degrade() leaves
# about +-0.04 at x8) passes; a 0..255 or a [-1, 1] image is refused
RANGE_TOLERANCE = 0.5


def to_batch(image) -> torch.Tensor:
    """PIL / numpy uint8 / torch float in [0, 1] -> float32 ``(B, 3, H, W)`` on the CPU."""
    if isinstance(image, Image.Image):
        image = _to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise BadInputError(
                f"numpy images must be uint8 (H, W, 3), got {image.dtype} {image.shape}"
            )
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise BadInputError(f"numpy images must be (H, W, 3), got shape {image.shape}")
        image = image[..., :3]
        t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)
        return t.unsqueeze(0)
    if torch.is_tensor(image):
        t = image.detach()
        if t.dtype == torch.uint8:
            t = t.float() / 255
        if not t.is_floating_point():
            raise BadInputError(f"tensor images must be float in [0, 1], got {t.dtype}")
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] != 3:
            raise BadInputError(
                f"tensor images must be (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}"
            )
        if not torch.isfinite(t).all():  # NaN / Inf have no colour: refused, not clamped
            bad = int((~torch.isfinite(t)).sum())
            raise BadInputError(f"the image tensor holds {bad} NaN/infinite value(s)")
        if t.numel():  # a 0..255 float image would come out almost white: refused, as numpy
            lo, hi = float(t.min()), float(t.max())
            if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
                hint = " (a 0..255 image? divide it by 255)" if hi > 2 else ""
                raise BadInputError(
                    f"tensor images must be float in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
                    f"{hint}"
                )
        return t.float()
    raise BadInputError(
        f"unsupported image type {type(image).__name__}: pass one PIL image, a uint8 numpy array "
        "or a float tensor in [0, 1] (a batch: one (B, 3, H, W) tensor; a list of images: one "
        "call per image)"
    )


def _batch_shape(image) -> tuple[int, int, int] | None:
    """(B, H, W) of an input as :func:`to_batch` will read it, without converting it (None:
    not a shape it reads; to_batch then says why)."""
    if isinstance(image, Image.Image):
        return 1, image.height, image.width
    if isinstance(image, np.ndarray) and image.ndim in (2, 3):
        return 1, image.shape[0], image.shape[1]
    if torch.is_tensor(image) and image.ndim in (3, 4):
        b = image.shape[0] if image.ndim == 4 else 1
        return b, image.shape[-2], image.shape[-1]
    return None


def _to_uint8(sr: torch.Tensor) -> torch.Tensor:
    return torch.floor(sr.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def _to_float(sr: torch.Tensor) -> torch.Tensor:
    return sr.float().clamp(0, 1)


def _from_batch(sr: torch.Tensor, output_type: OutputType):
    if sr.dtype == torch.uint8:  # already converted tile by tile
        if output_type == "pt":
            return sr.float() / 255
    else:
        sr = _to_float(sr)
        if output_type == "pt":
            return sr
        sr = _to_uint8(sr)
    arrays = [x.permute(1, 2, 0).cpu().numpy() for x in sr]
    if output_type == "np":
        return arrays
    return [Image.fromarray(a) for a in arrays]


# ----------------------------------------------------------------------------- pipeline


class TGSRPipeline:
    """Generator + text encoder + vocabulary, with the pre/post-processing around them."""

    def __init__(self, generator, text_encoder, vocab, info: PipelineInfo):
        self.generator = generator.eval()
        self.text_encoder = text_encoder.eval() if text_encoder is not None else None
        self.vocab = vocab
        self.info = info
        self._check()
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._radius: int | None = None
        self._forward = self.generator  # or a CompiledForward (compile_generator)
        # the generator's float32 weights (CPU) while it runs in a lower precision: what
        # save_pretrained / ONNX export write and what .to(dtype=float32) restores
        self._float32_state: dict[str, torch.Tensor] | None = None
        self.generator.to(memory_format=self.memory_format)

    # -- construction --------------------------------------------------------------------------
    def _check(self) -> None:
        gen, info = self.generator, self.info
        if gen.scale != info.scale:
            raise ModelFormatError(
                f"pipeline.json says x{info.scale} but the generator is x{gen.scale}"
            )
        if bool(gen.use_text) != bool(info.use_text):
            raise ModelFormatError(
                f"pipeline.json says use_text={info.use_text} but the generator has "
                f"use_text={gen.use_text}"
            )
        if not info.use_text:
            return
        if self.text_encoder is None or self.vocab is None:
            raise ModelFormatError("this model uses text but has no text encoder or vocabulary")
        if len(self.vocab) != self.text_encoder.vocab_size:
            raise ModelFormatError(
                f"vocab.json has {len(self.vocab)} words but the text encoder "
                f"{self.text_encoder.vocab_size}"
            )
        word_dim = getattr(gen, "word_dim", None)
        if word_dim is not None and word_dim != self.text_encoder.feature_dim:
            raise ModelFormatError(
                f"the text encoder gives {self.text_encoder.feature_dim}-d words but the "
                f"generator expects {word_dim}-d"
            )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = "auto",
        compile: bool = False,
    ) -> TGSRPipeline:
        """Load a pipeline folder (``pipeline.json`` at its root) or a training run folder.

        ``dtype="auto"`` runs the generator in bf16 where that is faster (:func:`fast_bf16`: CUDA
        GPUs with bf16, CPUs with AMX / AVX-512-BF16) and in float32 elsewhere.
        ``compile=True``: run the generator through ``torch.compile``
        (:meth:`compile_generator`)."""
        path = Path(path)
        if not path.is_dir():
            raise ModelFormatError(f"model folder not found: {path}")
        if not (path / PIPELINE_NAME).is_file() and (path / "config.yaml").is_file():
            pipe = pipeline_from_run(path).to(device, dtype=dtype)
            return pipe.compile_generator() if compile else pipe
        info = PipelineInfo.load(path / PIPELINE_NAME)
        generator = load_generator(path / "generator")
        text_encoder = vocab = None
        if info.use_text:
            text_encoder, _ = load_text_encoder(path / "text_encoder")
            vocab_path = path / "vocab.json"
            if not vocab_path.is_file():
                raise ModelFormatError(f"{path}: missing vocab.json")
            try:
                vocab = Vocabulary.load(vocab_path)
            except (OSError, ValueError) as exc:
                raise ModelFormatError(str(exc)) from None
        pipe = cls(generator, text_encoder, vocab, info).to(device, dtype=dtype)
        return pipe.compile_generator() if compile else pipe

    def compile_generator(self, dynamic: bool | None = False) -> TGSRPipeline:
        """Run the generator through ``torch.compile(dynamic=dynamic)`` from the next call on
        (:mod:`tgsr.compiled`): static shapes by default, as tiles all have one size. Compiling
        happens at the first call; where it is unavailable or fails, a one-line warning is logged
        and the generator runs eagerly (``compile_error`` says why). ``self.generator`` stays the
        plain module (saving, ONNX export)."""
        self._forward = CompiledForward(self.generator, dynamic=dynamic)
        return self

    @property
    def compile_error(self) -> TGSRError | None:
        """Why ``torch.compile`` was given up (None: not asked for, or working)."""
        return getattr(self._forward, "error", None)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the pipeline folder (``pipeline.json`` last, so its presence means complete)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / PIPELINE_NAME).unlink(missing_ok=True)
        save_generator(self.float32_generator(), path / "generator")
        if self.info.use_text:
            save_text_encoder(self.text_encoder.float(), path / "text_encoder")
            self.vocab.save(path / "vocab.json")
        info = PipelineInfo(**{**asdict(self.info), "tgsr_version": __version__})
        atomic_write(path / PIPELINE_NAME, json.dumps(info.to_json(), indent=2) + "\n")
        return path

    def float32_generator(self) -> torch.nn.Module:
        """The generator in float32 on the CPU, with the exact float32 weights it was loaded
        with when it runs in bf16 (a copy then; ``self.generator`` itself when it already
        runs in float32 on the CPU). Weights changed after a bf16 conversion are upcast, with a
        warning that they hold bf16-rounded values."""
        if self.dtype == torch.float32 and self.device.type == "cpu":
            return self.generator
        generator = copy.deepcopy(self.generator).float().cpu()
        if self.dtype != torch.float32:
            if self._float32_state is not None and self._master_matches():
                generator.load_state_dict(self._float32_state)
            else:
                warnings.warn(
                    f"the generator runs in {self.dtype} and its float32 weights are not kept "
                    "(changed after the conversion): the float32 copy holds rounded weights",
                    stacklevel=3,
                )
        return generator

    def _master_matches(self) -> bool:
        """Whether the generator still holds ``_float32_state`` cast to its dtypes (nothing
        changed its weights since the conversion)."""
        state = self.generator.state_dict()
        master = self._float32_state or {}
        if state.keys() != master.keys():
            return False
        return all(torch.equal(v, master[k].to(v.device, v.dtype)) for k, v in state.items())

    def to(
        self, device: str | torch.device | None = None, *, dtype: torch.dtype | str | None = None
    ) -> TGSRPipeline:
        """Move to ``device``; ``dtype`` (float32, bfloat16 or ``"auto"``, resolved for the
        device) applies to the generator, whose normalisation layers stay float32. The small text
        encoder always runs in float32 and its features are cast.

        On CPUs and CUDA GPUs the generator runs channels_last (NHWC): measured faster there in
        both float32 and bf16 (``benchmarks/speed.py``: 1.3-2.9x for float32 on a CPU, 1.5x for
        bf16 on an H200)."""
        if device is not None:
            self.device = torch.device(device)
            self.generator.to(self.device)
            if self.text_encoder is not None:
                self.text_encoder.to(self.device)
        if dtype is not None:
            dtype = resolve_dtype(dtype, self.device)
            if dtype != torch.float32 and self.dtype == torch.float32:  # keep the exact weights
                state = self.generator.state_dict()
                self._float32_state = {k: v.detach().cpu().clone() for k, v in state.items()}
            elif dtype == torch.float32 and self.dtype != torch.float32:
                restore = self._float32_state is not None and self._master_matches()
                cast_generator(self.generator, dtype)
                if restore:
                    self.generator.load_state_dict(self._float32_state)
                self._float32_state = None
            self.dtype = dtype
            cast_generator(self.generator, dtype)
        self.generator.to(memory_format=self.memory_format)
        return self

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last on CPUs and CUDA GPUs, where it is faster; contiguous elsewhere."""
        if self.device.type in ("cpu", "cuda"):
            return torch.channels_last
        return torch.contiguous_format

    # -- properties ----------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def use_text(self) -> bool:
        return self.info.use_text

    @property
    def max_words(self) -> int:
        return self.info.max_words

    # -- text ----------------------------------------------------------------------------------
    def encode_text(self, captions: list[str]):
        """Captions -> (TextFeatures on the device, words read, unknown words, warnings)."""
        if not self.use_text:
            return None, [[] for _ in captions], [[] for _ in captions], []
        ids, lengths, words, unknown, notes = [], [], [], [], []
        for caption in captions:
            if not isinstance(caption, str):
                raise BadInputError(f"a caption must be a string, got {type(caption).__name__}")
            enc = self.vocab.encode(caption, self.max_words, rng=None)
            tokens = tokenize(caption, lowercase=self.vocab.lowercase)
            ids.append(enc.ids)
            lengths.append(enc.length)
            words.append(tokens[: self.max_words])
            unknown.append(enc.unknown)
            if len(tokens) > self.max_words:
                read = " ".join(tokens[: self.max_words])
                notes.append(
                    f"caption has {len(tokens)} words; the model reads the first "
                    f"{self.max_words}: '{read} …'"
                )
            if tokens and len(enc.unknown) == enc.length:
                notes.append(
                    f"no word of the caption is in the model's vocabulary ({', '.join(enc.unknown)}):"
                    " the text gives no useful guidance"
                )
            elif enc.unknown:
                notes.append(f"unknown word(s) read as <unk>: {', '.join(enc.unknown)}")
        tokens_t = torch.tensor(ids, dtype=torch.int64, device=self.device)
        lengths_t = torch.tensor(lengths, dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            feats = self.text_encoder.encode(tokens_t, lengths_t)
        return feats, words, unknown, notes

    # -- inference -----------------------------------------------------------------------------
    def _plan(self, b: int, h: int, w: int, tile: int | None, overlap: int | None, max_memory):
        """-> a :class:`~tgsr.tiling.TilePlan`, or None for an untiled run.

        ``tile=None`` with no tile in ``pipeline.json``: the cheapest tiling whose activations
        fit ``max_memory`` (untiled when the whole image fits); tiles overlap by twice the
        generator's receptive-field radius, so every output pixel equals the untiled one.
        A given ``tile``/``overlap`` (or ``pipeline.json``'s) is used as it is; an overlap
        below twice the radius is blended across the seams instead."""
        if tile == 0:
            return None
        budget = parse_memory(DEFAULT_MAX_MEMORY if max_memory is None else max_memory)

        def memory_of(t: int, n: int) -> int:
            return peak_activation_bytes(self.generator, t, n, self.dtype)

        if tile is None and self.info.tile is None:
            if memory_of(max(h, w), b) <= budget:  # no receptive-field probe for small inputs
                return None
            plan = plan_tiles(h, w, self.receptive_radius, memory_of, budget, batch=b)
            if overlap is None or plan.tile is None:
                return plan
            tile = plan.tile
        elif tile is None:
            tile = self.info.tile
            if h <= tile and w <= tile:
                return None
            if overlap is None and self.info.tile_overlap is not None:
                overlap = min(self.info.tile_overlap, tile // 2)
        try:
            check_tile_options(tile, overlap)
            radius = self.receptive_radius
            if overlap is None:
                overlap = 2 * radius
            check_tile_options(tile, overlap, ("tile", "overlap (default: twice the radius)"))
        except ValueError as exc:
            raise TGSRError(str(exc)) from None
        margin = radius if overlap >= 2 * radius else 0  # 0: blended seams
        mem = memory_of(tile, b)
        batch_tiles = max(1, min(budget // max(mem, 1), 64))
        return TilePlan(tile, overlap, margin, int(batch_tiles), 0, 0, mem, _pixels=h * w)

    def _check_output_size(self, b: int, h: int, w: int, limit: int) -> None:
        try:
            n = operator.index(limit)
        except TypeError:
            n = 0
        if isinstance(limit, bool) or n < 1:
            raise BadInputError(f"max_output_pixels must be a positive integer, got {limit!r}")
        why = output_size_error(w, h, self.scale, n, b)
        if why is not None:
            raise BadInputError(f"{why} (or raise max_output_pixels=)")

    @property
    def receptive_radius(self) -> int:
        """The generator's receptive-field radius in LR pixels (computed once, then cached)."""
        if self._radius is None:
            self._radius = receptive_radius(self.generator)
        return self._radius

    def __call__(
        self,
        image,
        text: str | list[str] = "",
        *,
        return_attention: bool = False,
        tile: int | None = None,
        overlap: int | None = None,
        max_memory: int | str | None = None,
        output_type: OutputType = "pil",
        progress=None,
        lr_guard: float | None = None,
        max_output_pixels: int = MAX_OUTPUT_PIXELS,
    ) -> TGSROutput:
        """Upscale ``image`` guided by ``text``.

        Args:
            image: PIL image, numpy uint8 ``(H, W, 3)``, or float tensor ``(3, H, W)`` /
                ``(B, 3, H, W)`` in [0, 1].
            text: one caption for every image, or one per image. Ignored by a no-text model.
            return_attention: also return the word maps of the last Text Attention Module.
            tile: LR tile side. ``None``: automatic (the largest tiles whose activations fit
                ``max_memory``; untiled when the whole image fits); ``0``: never tile; ``N``:
                ``N``-pixel tiles.
            overlap: tile overlap in LR pixels (default: twice the generator's receptive-field
                radius, which makes the tiled output equal the untiled one).
            max_memory: activation memory budget of one generator call, bytes or a string
                such as ``"2GB"`` (default ``DEFAULT_MAX_MEMORY``); tiles are batched into one
                call as far as it allows.
            output_type: ``"pil"`` (default), ``"np"`` (uint8 arrays) or ``"pt"``.
            progress: optional ``progress(done, total)`` callback per batch of tiles.
            lr_guard: keep every output within this many dB (LR-PSNR) of its input
                (:func:`tgsr.lr_guard.lr_guard`; ``TGSROutput.lr_guard_alpha`` says how far each
                was pulled). Default: ``pipeline.json``'s ``lr_guard`` (none unless the folder
                sets one); ``0``: off.
            max_output_pixels: refuse (:class:`BadInputError`, before any work) a call whose
                outputs, all images of a batch together, would hold more pixels than this
                (default ``MAX_OUTPUT_PIXELS`` = 2**28, as ``tgsr upscale``).
        """
        if output_type not in ("pil", "np", "pt"):
            raise TGSRError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        try:
            lr_guard = check_guard_db(lr_guard, zero_is_off=True)
        except ValueError as exc:
            raise BadInputError(str(exc)) from None
        if max_memory is not None:  # checked even when nothing is tiled
            try:
                parse_memory(max_memory)
            except ValueError as exc:
                raise BadInputError(f"max_memory: {exc}") from None
        shape = _batch_shape(image)
        if shape is not None:
            self._check_output_size(*shape, max_output_pixels)
        lq = to_batch(image)
        b, _, h, w = lq.shape
        if h < 1 or w < 1:
            raise BadInputError(f"empty image ({h}x{w})")
        # one caption for all (a non-string is refused with one line by encode_text), or a list
        captions = list(text) if isinstance(text, (list, tuple)) else [text] * b
        if len(captions) == 1 and b > 1:
            captions = captions * b
        if len(captions) != b:
            raise BadInputError(f"{len(captions)} captions for {b} images")
        feats, words, unknown, notes = self.encode_text(captions)  # once per image, not per tile
        for note in notes:
            warnings.warn(note, CaptionWarning, stacklevel=2)
        lq_in = lq  # float32 on the CPU, for the LR guard
        lq = lq.to(self.device, self.dtype)
        text_args = {}
        if feats is not None:
            text_args = {
                "words": feats.words.to(self.dtype),
                "sentence": feats.sentence.to(self.dtype),
                "token_mask": feats.token_mask,
            }
        n_words = max((len(x) for x in words), default=0)
        want_attn = return_attention and self.use_text

        def run(x: torch.Tensor, frame: torch.Tensor | None = None):
            x = x.contiguous(memory_format=self.memory_format)
            k = x.shape[0] // b  # tiles stacked along the batch, tile-major
            args = {n: v.repeat(k, *([1] * (v.dim() - 1))) for n, v in text_args.items()}
            if frame is not None:  # a tile: coordinate channels of the whole image
                args["coord_frame"] = frame
            out = self._forward(x, **args, sr_only=True)
            if not want_attn:
                return out.sr
            return out.sr, out.attn[-1][:, :n_words]  # (B, n_words, h_k, w_k)

        plan = self._plan(b, h, w, tile, overlap, max_memory)
        with torch.inference_mode():
            if plan is None:
                result = run(lq)
            else:
                exact = plan.margin > 0
                result = tiled_apply(
                    run,
                    lq,
                    plan.tile,
                    plan.overlap,
                    self.scale,
                    margin=plan.margin if exact else None,
                    blend=not exact,
                    batch_tiles=plan.batch_tiles,
                    convert=_to_uint8 if output_type != "pt" else _to_float,
                    progress=progress,
                    with_frame=bool(getattr(self.generator, "coords", False)),
                )
        sr, attn = result if want_attn else (result, None)
        if sr.shape[-2:] != (h * self.scale, w * self.scale):  # pragma: no cover - model bug
            raise TGSRError(f"model returned {tuple(sr.shape[-2:])} for a {h}x{w} input")
        guard = self.info.lr_guard if lr_guard is None else lr_guard
        alpha = None
        if guard:
            sr = (sr.float() / 255 if sr.dtype == torch.uint8 else sr.float()).cpu()
            sr, alpha = apply_lr_guard(sr, lq_in.float().cpu(), self.scale, float(guard),
                                       self.info.degradation)  # fmt: skip
        attention = None
        if want_attn:
            attention = [attn[i, : len(words[i])].float().cpu() for i in range(b)]
        return TGSROutput(
            images=_from_batch(sr, output_type),
            captions=captions,
            words=words,
            unknown_words=unknown,
            attention=attention,
            warnings=notes,
            tiled=plan is not None,
            lr_guard_alpha=alpha,
        )

    def bicubic(self, image, output_type: OutputType = "pil"):
        """The MATLAB-bicubic upscale of ``image`` by the model's scale (the usual baseline)."""
        lq = to_batch(image)
        return _from_batch(imresize(lq, self.scale, method="bicubic"), output_type)

    def __repr__(self) -> str:
        text = "text" if self.use_text else "no text"
        return (
            f"TGSRPipeline(x{self.scale}, {text}, max_words={self.max_words}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def pipeline_from_run(run_dir: str | os.PathLike) -> TGSRPipeline:
    """The inference pipeline of a training run folder (CPU, float32; :mod:`tgsr.run_folder`)."""
    run = read_run(run_dir)
    cfg = run.config
    info = PipelineInfo(
        scale=cfg.data.scale,
        lq_size=cfg.data.hr_size // cfg.data.scale,
        max_words=cfg.data.max_words,
        degradation=cfg.data.degradation,
        use_text=cfg.generator.use_text,
        name=cfg.name,
        source=str(run.path.resolve()),
        tgsr_version=__version__,
    )
    return TGSRPipeline(run.generator, run.text_encoder, run.vocab, info)


def attention_to_image(attn: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """One word map ``(h, w)`` with values in [0, 1] -> uint8 RGB heat map (``size=(H, W)``:
    nearest-upsampled). Values are not renormalised, so maps of different words compare."""
    from matplotlib import colormaps  # lazy: see the note at the imports

    a = attn.detach().float().clamp(0, 1)
    if size is not None and tuple(a.shape) != tuple(size):
        a = torch.nn.functional.interpolate(a[None, None], size=size, mode="nearest")[0, 0]
    rgb = colormaps["viridis"](a.cpu().numpy())[..., :3]
    return np.floor(rgb * 255 + 0.5).astype(np.uint8)
