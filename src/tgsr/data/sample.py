"""The sample dict every dataset returns (contract in ``docs/architecture.md``)."""

from __future__ import annotations

import random

import numpy as np
import torch

from tgsr.config import DataConfig
from tgsr.data.degradations import degrade, desaturate, image_to_tensor, quantize
from tgsr.errors import BadInputError
from tgsr.text import Vocabulary


def make_sample(
    gt: np.ndarray,
    caption: str,
    vocab: Vocabulary,
    data_cfg: DataConfig,
    rng: random.Random | None,
    key: str,
    class_id: int = 0,
    lq_colour: float = 1.0,
    target: np.ndarray | None = None,
) -> dict:
    """``gt`` uint8 ``(H, W, 3)`` + caption -> the sample dict.

    ``lq = quantize(degrade(gt, scale, method))`` (the 8-bit LR a user would save as PNG);
    tokens via ``vocab.encode(caption, max_words, rng)`` (``rng=None``: deterministic first N
    words). ``lq_colour`` < 1 scales the LR's chroma (``data.lq_colour_drop``; the target keeps
    its colour). ``target``: the HR target when it is not ``gt`` itself (``data.recolour``: the
    LR still comes from ``gt``). A caption with no usable word raises :class:`BadInputError` naming ``key``.
    """
    gt_t = image_to_tensor(gt)  # (3, H, W) float in [0, 1]
    h, w = gt_t.shape[-2:]
    if h % data_cfg.scale or w % data_cfg.scale:
        raise BadInputError(f"{key}: image {h}x{w} is not a multiple of the scale {data_cfg.scale}")
    lq = degrade(gt_t, data_cfg.scale, data_cfg.degradation)  # (3, H/s, W/s)
    if lq_colour < 1.0:
        lq = desaturate(lq, lq_colour)
    lq = quantize(lq)
    enc = vocab.encode(caption, data_cfg.max_words, rng)
    if enc.length == 0:
        raise BadInputError(f"{key}: empty caption {caption!r}")
    return {
        "gt": gt_t if target is None else image_to_tensor(target),
        "lq": lq,
        "tokens": torch.tensor(enc.ids, dtype=torch.int64),
        "length": torch.tensor(enc.length, dtype=torch.int64),
        "class_id": torch.tensor(class_id, dtype=torch.int64),
        "caption": caption,
        "key": key,
    }
