"""Pieces shared by the evaluation driver (:mod:`tgsr.evaluation.evaluate`) and the ShapeCaps
protocol (:mod:`tgsr.evaluation.shapecaps`): the evaluation set as tensors, a model's outputs,
running a model over a set in batches, captions as token batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from tgsr.config import DataConfig


@dataclass
class SROutput:
    sr: torch.Tensor
    coarse: torch.Tensor | None = None
    attn: torch.Tensor | None = None  # (B, T, h, w) of the last TAM


def eval_data_config(data: DataConfig, split: str, num: int | None) -> DataConfig:
    """``data`` for the evaluation ``split`` (on ShapeCaps: ``num`` scenes, default 300)."""
    if data.format == "synthetic":
        syn = dataclasses.replace(data.synthetic, split=split, num=num or 300)
        return dataclasses.replace(data, synthetic=syn)
    return dataclasses.replace(data, split=split)


def collect(dataset, batch_size: int, limit: int | None) -> dict:
    """The evaluation set as stacked tensors / lists (small sets; real sets are streamed)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out: dict = {}
    n = 0
    for batch in loader:
        for k, v in batch.items():
            out.setdefault(k, []).append(v)
        n += len(batch["key"])
        if limit and n >= limit:
            break
    for k, v in list(out.items()):
        if torch.is_tensor(v[0]):
            out[k] = torch.cat(v)[:limit] if limit else torch.cat(v)
        else:
            flat = [x for chunk in v for x in chunk]
            out[k] = flat[:limit] if limit else flat
    return out


def batch_slices(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def run_model(model: Callable, lq, tokens, lengths, batch_size: int) -> SROutput:
    """``model(lq, tokens, lengths) -> SROutput`` over the whole set, ``batch_size`` at a time
    (the attention maps of the first batch only)."""
    srs, coarse, attn = [], [], []
    for sl in batch_slices(len(lq), batch_size):
        out = model(lq[sl], tokens[sl], lengths[sl])
        srs.append(out.sr.float())
        if out.coarse is not None:
            coarse.append(out.coarse.float().clamp(0, 1))
        if out.attn is not None and not attn:
            attn.append(out.attn.float())
    return SROutput(
        torch.cat(srs), torch.cat(coarse) if coarse else None, attn[0] if attn else None
    )


def encode_captions(vocab, captions: list[str], max_words: int):
    """(tokens, lengths) of ``captions``, as the data sets produce them."""
    enc = [vocab.encode(c, max_words) for c in captions]
    return (
        torch.tensor([e.ids for e in enc], dtype=torch.long),
        torch.tensor([e.length for e in enc], dtype=torch.long),
    )
