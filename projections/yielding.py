"""A projector in a process of its own yields the CPU to the execution path.

Projections are read models: a view a second late harms nobody, a job started a second late
does. So a projector that runs as its own process (``jetwork projector``, the one ``jetwork
server`` starts, the benchmark's) lowers its CPU priority (``nice``, ``ProjectorSettings.nice``).
With CPU to spare it is as prompt as before; when the engine, the workers and nats-server want
every core (a burst), the scheduler serves them first and the projector catches up after, in
larger batches that cost less per event (a workflow that started and ended within one batch is
written once). It is never starved: a niceness of 10 still gets about a tenth of a contended
core, well within its partition leases and its feeds' heartbeats. Measured in docs/performance.md,
"The projector yields the CPU".
"""

from __future__ import annotations

import os
from typing import Final

NICEST: Final = 19
"""The highest niceness (the lowest priority) there is."""


def check_niceness(value: int, *, what: str) -> int:
    """``value`` if it is a niceness a projector may take (0: as it is, up to ``NICEST``)."""
    if not 0 <= value <= NICEST:
        raise ValueError(f"{what}={value}: a niceness from 0 (as it is) to {NICEST}")
    return value


def lower_cpu_priority(niceness: int) -> int:
    """Raise this process's niceness to at least ``niceness`` (never lowers it); returns the
    niceness now (0 where the platform has none).

    Call it from the thread that does the work (the event loop's): Linux keeps a niceness per
    thread, and a thread started later takes its creator's.
    """
    if not hasattr(os, "getpriority"):  # Windows: no niceness to take
        return 0
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if check_niceness(niceness, what="niceness") > current:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    return os.getpriority(os.PRIO_PROCESS, 0)
