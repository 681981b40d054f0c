"""How jetwork's long-running processes run: the event loop and the garbage collector.

The engine, the projector, a worker and a rebuild allocate many short-lived objects for every
message (Msg, headers, decoded events, folded states) while keeping many long-lived ones (cached
workflow states). With CPython's default thresholds a young-generation collection runs every 700
allocations, and older-generation passes walk the long-lived ones again and again: measured, a
rebuild of the projections spends ~20% of its CPU there (``docs/performance.md``). Objects are
still freed by reference counting as soon as they are unused; only reference cycles wait longer.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# (young, middle, old): a young collection every 5,000 allocations instead of 700. It was
# 50,000 until 2026-12-07: a young collection then had ~40,000 objects to look at (the worker
# left ~60 objects of cyclic garbage per job, since removed: docs/performance.md) and paused
# its process 15-25 ms, once every few hundred jobs, which the idle hops' p99 showed (a 450-hop
# run's slowest hop 17-25 ms; 3.6 ms at 5,000). Measured alternating, S1's CPU per job did not
# move (2.10/2.18 ms against 2.18/2.15) and a rebuild's rose ~3%.
GC_THRESHOLDS = (5_000, 20, 100)


def tune_gc() -> None:
    """Collect less often; what start-up allocated (modules, classes) is left out for good."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_service(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a long-lived process's main coroutine: tuned collector, uvloop when installed."""
    tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - not installed on Windows (pyproject marker)
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
