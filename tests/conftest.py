"""Test-wide settings: one torch thread (tiny tensors; oversubscribing 2 cores makes small ops
10x slower), the test folder importable (shared fixture builders), no network for weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(1)
