"""Device choices that change speed only: where the training data are loaded."""

from __future__ import annotations

import os

import pytest
import torch

import tgsr.training.common as common
from tgsr.config import load_config
from tgsr.data.loader import build_vocabulary
from tgsr.device import effective_num_workers


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(("threads", "configured", "expected"),
                         [(2, 1, 0), (4, 2, 0), (1, 1, 1), (1, 0, 0), (2, 0, 0)])  # fmt: skip
def test_no_loader_process_when_torch_fills_the_cores(two_cores, monkeypatch, threads,
                                                       configured, expected):  # fmt: skip
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert effective_num_workers(configured) == expected


def test_loader_processes_kept_with_a_gpu(two_cores, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert effective_num_workers(2) == 2


def test_a_loader_process_gives_the_same_batches(monkeypatch):
    """The batches (images, tokens, captions) are the same whether a worker process or the
    training process makes them, so choosing either changes no result."""
    cfg = load_config("quickstart", ["data.hr_size=32", "data.num_workers=1"])
    vocab = build_vocabulary(cfg.data)
    streams = []
    for workers in (0, 1):
        monkeypatch.setattr(common, "effective_num_workers", lambda n, w=workers: w)
        loader = common.train_loader(cfg.data, vocab, 4, "train.batch_size", seed=3)
        assert loader.num_workers == workers
        batches = common.infinite(loader, start=2)
        streams.append([next(batches) for _ in range(3)])
    for a, b in zip(*streams, strict=True):
        assert sorted(a) == sorted(b)
        for key in a:
            if torch.is_tensor(a[key]):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key
