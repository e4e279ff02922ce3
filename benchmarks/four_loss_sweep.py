"""The paper's four losses (L2, TAR, TIC 0.5, cGAN 0.1) on the quickstart preset: does the text
take off? Learning curves of the rows of ``ablations.py --suite four_loss`` side by side.

    PYTHONPATH=src python3 benchmarks/four_loss_sweep.py --device cuda --out OUT.jsonl \
        [--minutes 5.5] [--steps 3000] [any other option of benchmarks/ablations.py]

A thin front end of ``benchmarks/ablations.py`` (which see for the options and the output).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablations import main  # noqa: E402

if __name__ == "__main__":
    if "--suite" not in sys.argv:
        sys.argv[1:1] = ["--suite", "four_loss"]
    main()
