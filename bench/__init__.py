"""Benchmarks: mediabroker against the physical floor and against what people use.

Run from the repository root::

    python -m bench             # the full matrix, several minutes
    python -m bench --quick     # a subset, under a minute
    python -m bench --soak 600  # RSS and open fds of the daemon and readers over 10 minutes

Results (markdown, JSON, PNG) go to bench/results/. See bench/README.md for
what each figure means and how it is measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = (REPO / "client", REPO / "broker")


def _use_this_checkout() -> None:
    """Benchmark the code in this checkout, installed or not. Processes the
    bench spawns inherit ``sys.path``; the daemon gets it in PYTHONPATH."""
    for root in reversed(SOURCE_ROOTS):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))


_use_this_checkout()
