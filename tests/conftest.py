"""Test-wide settings: one torch thread (tiny tensors; oversubscribing 2 cores makes small ops
10x slower), the test folder importable (shared fixture builders), no network for weights."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# the decoded-image cache of real data sets goes to a throw-away folder, not ~/.cache, removed
# when the test run ends (a run leaves nothing behind in /tmp)
if "TGSR_CACHE_DIR" not in os.environ:
    os.environ["TGSR_CACHE_DIR"] = tempfile.mkdtemp(prefix="tgsr-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TGSR_CACHE_DIR"], ignore_errors=True)
torch.set_num_threads(1)
