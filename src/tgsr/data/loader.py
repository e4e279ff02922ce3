"""``data.format`` -> records, vocabulary and the torch Dataset (one explicit table of readers,
no registry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from tgsr.config import DataConfig
from tgsr.data import datasets as ds
from tgsr.data import synthetic
from tgsr.data.datasets import CaptionedImageDataset, Record, Skips
from tgsr.data.images import load_image
from tgsr.errors import BadInputError, TGSRError
from tgsr.text import Vocabulary, tokenize

# data.format -> the reader of one split: (root, split, captions_per_image, skips) -> records.
# The synthetic benchmark has no files: it is generated (synthetic.SyntheticDataset).
READERS: dict[str, Callable[[Path, str, int | None, Skips], list[Record]]] = {
    "cub": ds.read_cub,
    "oxford102": ds.read_oxford102,
    "coco": ds.read_coco,
    "celeba_hq": ds.read_celeba_hq,
    "celeba_attr": ds.read_celeba_attr,
    "folder": ds.read_folder,
    "jsonl": ds.read_jsonl,
}
FORMATS = ("synthetic", *READERS)


def lowercase_for(data_format: str) -> bool:
    """CelebA attribute names (``Big_Lips``) keep their case; every other format lower-cases."""
    return data_format != "celeba_attr"


def read_records(
    data_cfg: DataConfig, split: str, skipped: list[str] | None = None
) -> list[Record]:
    """The records of one split. Bad entries raise :class:`BadInputError` naming the file, or
    with ``data.skip_bad`` are appended to ``skipped`` as ``"<file>: <reason>"``."""
    fmt = data_cfg.format
    if fmt == "synthetic":
        raise TGSRError("the synthetic benchmark has no files to read: use build_dataset()")
    if fmt not in READERS:
        raise TGSRError(f"unknown data.format {fmt!r}; known: {', '.join(FORMATS)}")
    if not data_cfg.root:
        raise TGSRError(f"data.root is required for data.format={fmt!r}")
    root = Path(data_cfg.root).expanduser()
    if not root.exists():
        raise BadInputError(f"{root}: data set not found")
    skips = Skips(data_cfg.skip_bad, skipped)
    return READERS[fmt](root, split, data_cfg.captions_per_image, skips)


def build_vocabulary(data_cfg: DataConfig) -> Vocabulary:
    """The vocabulary of the **training** captions only (every caption of every image)."""
    if data_cfg.format == "synthetic":
        return synthetic.build_vocabulary(seed=data_cfg.synthetic.seed)
    records = read_records(data_cfg, "train", skipped=[])
    captions = (c for r in records for c in r.captions)
    return Vocabulary.build(captions, lowercase=lowercase_for(data_cfg.format))


def build_dataset(
    data_cfg: DataConfig, vocab: Vocabulary, train: bool, split: str | None = None
) -> Dataset:
    """The torch Dataset of ``split`` (default: ``data.split`` for training, ``data.eval_split``
    for evaluation). Samples follow ``docs/architecture.md``; ``collate`` stacks them."""
    if data_cfg.format == "synthetic":
        return synthetic.SyntheticDataset(data_cfg, vocab, train, split=split)
    split = split or (data_cfg.split if train else data_cfg.eval_split)
    skipped: list[str] = []
    records = read_records(data_cfg, split, skipped)
    return CaptionedImageDataset(records, vocab, data_cfg, train, skipped=skipped)


def collate(samples: list[dict]) -> dict:
    """Stack samples into a batch (tensors stacked, strings listed)."""
    return torch.utils.data.default_collate(samples)


def check_dataset(
    data_cfg: DataConfig,
    split: str = "train",
    vocab: Vocabulary | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Validate one split: counts, caption statistics, OOV rate, unreadable images.

    Every image is decoded (so truncated files are found). Images (after the CUB box crop) whose
    shorter side is below ``hr_size`` are listed under ``small``: information only, training
    upsamples them. Images below the floor (:func:`~tgsr.data.datasets.below_floor`: longer side
    under 32 px or shorter side under 8 px) are errors
    (``too_small``), like unreadable files. Returns a JSON-ready dict.
    """
    bad_records: list[str] = []
    records = read_records(replace(data_cfg, skip_bad=True), split, bad_records)
    lowercase = lowercase_for(data_cfg.format)
    per_image = [len(r.captions) for r in records]
    captions = [c for r in records for c in r.captions]
    words = [t for c in captions for t in tokenize(c, lowercase=lowercase)]
    own_vocab = Vocabulary.build(captions, lowercase=lowercase)
    unreadable: list[str] = []
    too_small: list[str] = []
    small: list[str] = []
    for i, rec in enumerate(records):
        try:
            img = load_image(rec.image_path)
            h, w = img.shape[:2]
            if ds.below_floor(h, w):
                too_small.append(f"{rec.image_path}: {w}x{h} (below the floor)")
            else:
                if rec.bbox is not None and data_cfg.bbox_crop:
                    boxed = ds.bbox_crop(img, rec.bbox)
                    if not ds.below_floor(*boxed.shape[:2]):
                        img = boxed
                if min(img.shape[:2]) < data_cfg.hr_size:
                    h, w = img.shape[:2]
                    small.append(f"{rec.image_path}: {w}x{h}")
        except BadInputError as exc:
            unreadable.append(str(exc))
        if on_progress is not None:
            on_progress(i + 1, len(records))
    report = {
        "format": data_cfg.format,
        "root": str(data_cfg.root),
        "split": split,
        "images": len(records),
        "captions": len(captions),
        "captions_per_image": {
            "min": min(per_image, default=0),
            "mean": round(sum(per_image) / len(per_image), 3) if per_image else 0.0,
            "max": max(per_image, default=0),
        },
        "words": len(words),
        "vocabulary_size": len(own_vocab),  # entries of a vocab.json built from this split
        "distinct_words": len(own_vocab) - 2,  # without <pad>, <unk>
        "hr_size": data_cfg.hr_size,
        "floor": {"longer_side": ds.MIN_IMAGE_SIDE, "shorter_side": ds.MIN_SHORT_SIDE},
        "unreadable": unreadable,
        "too_small": too_small,  # below the floor: errors
        "small": small,  # below hr_size: upsampled by the loader, information only
        "bad_records": bad_records,
    }
    if vocab is not None:
        oov = [w for w in words if w not in vocab]
        report["oov_rate"] = round(len(oov) / len(words), 6) if words else 0.0
        report["oov_words"] = len(set(oov))
    return report
