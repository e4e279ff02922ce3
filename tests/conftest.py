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
# A test run leaves nothing behind in /tmp: one scratch folder, removed when the run ends, holds
# the decoded-image cache of real data sets (not ~/.cache) and the temporary files of the
# processes the tests start (TMPDIR: torchrun's torchelastic_* folders, the CLI's temp files).
# Only the first process sets it up; the processes it starts inherit it.
if "TGSR_TEST_SCRATCH" not in os.environ:
    os.environ["TGSR_TEST_SCRATCH"] = tempfile.mkdtemp(prefix="tgsr-tests-")
    atexit.register(shutil.rmtree, os.environ["TGSR_TEST_SCRATCH"], ignore_errors=True)
    os.environ.setdefault("TGSR_CACHE_DIR", os.path.join(os.environ["TGSR_TEST_SCRATCH"], "cache"))
    os.environ["TMPDIR"] = os.environ["TGSR_TEST_SCRATCH"]
torch.set_num_threads(1)
