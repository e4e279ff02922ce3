"""``TGSRPipeline``: load a trained model folder and upscale images with a caption.

::

    from tgsr import TGSRPipeline

    pipe = TGSRPipeline.from_pretrained("out/model")          # a pipeline folder (or a run folder)
    result = pipe(image, "a red and cyan striped circle", return_attention=True)
    result.image.save("sr.png")
    result.words, result.attention[0].shape                   # ['a', 'red', ...], (n_words, H, W)

Inputs: a PIL image, a numpy ``uint8 (H, W, 3)`` (or ``(H, W)`` grey) array, or a torch float
tensor in [0, 1] shaped ``(3, H, W)`` or ``(B, 3, H, W)``. The output is ``scale`` times the input
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

Inputs larger than ``tile`` LR pixels on a side are processed in overlapping tiles with blended
seams (:mod:`tgsr.tiling`), so memory stays bounded by the tile size.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from tgsr.errors import BadInputError, ModelFormatError, TGSRError

PIPELINE_FORMAT_VERSION = 1
PIPELINE_NAME = "pipeline.json"
OutputType = Literal["pil", "np", "pt"]

__all__ = [
    "PIPELINE_FORMAT_VERSION",
    "CaptionWarning",
    "PipelineInfo",
    "TGSROutput",
    "TGSRPipeline",
    "default_tile",
]


class CaptionWarning(UserWarning):
    """A caption the model cannot fully read (unknown words, too long)."""


def default_tile(scale: int) -> int:
    """Default tile side in LR pixels: a 512 x 512 output tile (64 LR px at x8)."""
    return max(16, 512 // scale)


def default_overlap(tile: int) -> int:
    """Default overlap in LR pixels: a quarter of the tile, at least 8."""
    return max(8, tile // 4)


@dataclass
class PipelineInfo:
    """The content of ``pipeline.json``."""

    scale: int
    lq_size: int  # the LR side the model was trained on
    max_words: int
    degradation: str = "bicubic"
    use_text: bool = True
    tile: int | None = None  # tile side (LR px) for large inputs; None: default_tile(scale)
    tile_overlap: int | None = None  # None: default_overlap(tile)
    name: str = "tgsr"
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
        for key in ("scale", "lq_size", "max_words"):
            if isinstance(payload[key], bool) or not isinstance(payload[key], int):
                raise ModelFormatError(f"{path}: {key} must be an integer, got {payload[key]!r}")
        if not isinstance(payload.get("use_text", True), bool):
            raise ModelFormatError(f"{path}: use_text must be true or false")
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

    @property
    def image(self):
        """The first (or only) output image."""
        return self.images[0]


# ----------------------------------------------------------------------------- image conversion


def to_batch(image) -> torch.Tensor:
    """PIL / numpy uint8 / torch float in [0, 1] -> float32 ``(B, 3, H, W)`` on the CPU."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None  # noqa: N806
    if Image is not None and isinstance(image, Image.Image):
        from tgsr.data.images import _to_rgb

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
        return t.float()
    raise BadInputError(
        f"unsupported image type {type(image).__name__}: pass a PIL image, a uint8 numpy array "
        "or a float tensor in [0, 1]"
    )


def _from_batch(sr: torch.Tensor, output_type: OutputType):
    sr = sr.float().clamp(0, 1)
    if output_type == "pt":
        return sr
    arrays = [torch.floor(x * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy() for x in sr]
    if output_type == "np":
        return arrays
    from PIL import Image

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
        word_dim = gen.config.get("word_dim") if hasattr(gen, "config") else None
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
        dtype: torch.dtype | str = torch.float32,
    ) -> TGSRPipeline:
        """Load a pipeline folder (``pipeline.json`` at its root) or a training run folder."""
        from tgsr.models.serialization import load_generator, load_text_encoder
        from tgsr.text import Vocabulary

        path = Path(path)
        if not path.is_dir():
            raise ModelFormatError(f"model folder not found: {path}")
        if not (path / PIPELINE_NAME).is_file() and (path / "config.yaml").is_file():
            from tgsr.export import pipeline_from_run

            return pipeline_from_run(path).to(device, dtype=dtype)
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
        return cls(generator, text_encoder, vocab, info).to(device, dtype=dtype)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the pipeline folder (``pipeline.json`` last, so its presence means complete)."""
        from tgsr import __version__
        from tgsr.models.serialization import save_generator, save_text_encoder

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / PIPELINE_NAME).unlink(missing_ok=True)
        save_generator(self.generator.float(), path / "generator")
        if self.info.use_text:
            save_text_encoder(self.text_encoder.float(), path / "text_encoder")
            self.vocab.save(path / "vocab.json")
        self.generator.to(self.dtype)
        info = PipelineInfo(**{**asdict(self.info), "tgsr_version": __version__})
        tmp = path / f".{PIPELINE_NAME}.tmp"
        tmp.write_text(json.dumps(info.to_json(), indent=2) + "\n")
        os.replace(tmp, path / PIPELINE_NAME)
        return path

    def to(
        self, device: str | torch.device | None = None, *, dtype: torch.dtype | str | None = None
    ) -> TGSRPipeline:
        """Move to ``device``; ``dtype`` (float32 or bfloat16) applies to the generator. The small
        text encoder always runs in float32 and its features are cast."""
        if device is not None:
            self.device = torch.device(device)
            self.generator.to(self.device)
            if self.text_encoder is not None:
                self.text_encoder.to(self.device)
        if dtype is not None:
            if isinstance(dtype, str):
                names = {"float32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
                         "bfloat16": torch.bfloat16}  # fmt: skip
                if dtype not in names:
                    raise TGSRError(f"dtype must be float32 or bfloat16, got {dtype!r}")
                dtype = names[dtype]
            if dtype not in (torch.float32, torch.bfloat16):
                raise TGSRError(f"dtype must be float32 or bfloat16, got {dtype}")
            self.dtype = dtype
            self.generator.to(dtype)
        return self

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
        from tgsr.text import tokenize

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
                notes.append(
                    f"caption has {len(tokens)} words; the model reads the first "
                    f"{self.max_words}: {caption!r}"
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
    def _tile_params(self, h: int, w: int, tile: int | None, overlap: int | None):
        """-> (tile, overlap) or None for an untiled run."""
        if tile == 0:
            return None
        auto = tile is None
        if auto:
            tile = self.info.tile or default_tile(self.scale)
            if h <= tile and w <= tile:
                return None
        if tile < 4:
            raise TGSRError(f"tile must be at least 4 LR pixels, got {tile}")
        if overlap is None:
            overlap = self.info.tile_overlap if self.info.tile_overlap is not None else None
            overlap = default_overlap(tile) if overlap is None else overlap
            overlap = min(overlap, tile // 2)
        if not 0 < overlap < tile:
            raise TGSRError(f"overlap must be in [1, tile), got overlap={overlap}, tile={tile}")
        return tile, overlap

    def __call__(
        self,
        image,
        text: str | list[str] = "",
        *,
        return_attention: bool = False,
        tile: int | None = None,
        overlap: int | None = None,
        output_type: OutputType = "pil",
        progress=None,
    ) -> TGSROutput:
        """Upscale ``image`` guided by ``text``.

        Args:
            image: PIL image, numpy uint8 ``(H, W, 3)``, or float tensor ``(3, H, W)`` /
                ``(B, 3, H, W)`` in [0, 1].
            text: one caption for every image, or one per image. Ignored by a no-text model.
            return_attention: also return the word maps of the last Text Attention Module.
            tile: LR tile side. ``None``: tile only inputs larger than the model's default tile;
                ``0``: never tile; ``N``: tile with ``N``-pixel tiles.
            overlap: tile overlap in LR pixels (default: a quarter of the tile).
            output_type: ``"pil"`` (default), ``"np"`` (uint8 arrays) or ``"pt"``.
            progress: optional ``progress(done, total)`` callback per tile.
        """
        from tgsr.tiling import tiled_apply

        if output_type not in ("pil", "np", "pt"):
            raise TGSRError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        lq = to_batch(image)
        b, _, h, w = lq.shape
        if h < 1 or w < 1:
            raise BadInputError(f"empty image ({h}x{w})")
        captions = [text] * b if isinstance(text, str) else list(text)
        if len(captions) == 1 and b > 1:
            captions = captions * b
        if len(captions) != b:
            raise BadInputError(f"{len(captions)} captions for {b} images")
        feats, words, unknown, notes = self.encode_text(captions)
        for note in notes:
            warnings.warn(note, CaptionWarning, stacklevel=2)
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

        def run(x: torch.Tensor, args: dict):
            out = self.generator(x, **args)
            if not want_attn:
                return out.sr
            return out.sr, out.attn[-1][:, :n_words]  # (B, n_words, h_k, w_k)

        params = self._tile_params(h, w, tile, overlap)
        with torch.inference_mode():
            if params is None:
                result = run(lq, text_args)
            else:
                tile_, overlap_ = params
                result = tiled_apply(
                    lambda x: run(x, text_args),
                    lq,
                    tile_,
                    overlap_,
                    self.scale,
                    progress=progress,
                )
        sr, attn = result if want_attn else (result, None)
        if sr.shape[-2:] != (h * self.scale, w * self.scale):  # pragma: no cover - model bug
            raise TGSRError(f"model returned {tuple(sr.shape[-2:])} for a {h}x{w} input")
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
            tiled=params is not None,
        )

    def bicubic(self, image, output_type: OutputType = "pil"):
        """The MATLAB-bicubic upscale of ``image`` by the model's scale (the usual baseline)."""
        from tgsr.data.degradations import imresize

        lq = to_batch(image)
        return _from_batch(imresize(lq, self.scale, method="bicubic"), output_type)

    def __repr__(self) -> str:
        text = "text" if self.use_text else "no text"
        return (
            f"TGSRPipeline(x{self.scale}, {text}, max_words={self.max_words}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def attention_to_image(attn: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """One word map ``(h, w)`` with values in [0, 1] -> uint8 RGB heat map (``size=(H, W)``:
    nearest-upsampled). Values are not renormalised, so maps of different words compare."""
    from matplotlib import colormaps

    a = attn.detach().float().clamp(0, 1)
    if size is not None and tuple(a.shape) != tuple(size):
        a = torch.nn.functional.interpolate(a[None, None], size=size, mode="nearest")[0, 0]
    rgb = colormaps["viridis"](a.cpu().numpy())[..., :3]
    return np.floor(rgb * 255 + 0.5).astype(np.uint8)
