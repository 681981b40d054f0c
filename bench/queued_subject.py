"""``python -m bench.queued_subject``: the engine's per-job cost of naming a ``JobQueued``.

For every queued job the engine computes the event's subject and the label set it registers
(``JobQueued.route`` since priorities; ``labelset_token`` before, which this script falls back to
when run in an older tree). Best of 9 rounds of 100,000 calls, by process time, in microseconds
per job (docs/performance.md, "Priorities").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from events.catalog import JobQueued, JobSpec

ROUNDS, CALLS = 9, 100_000


def per_call(queued: JobQueued) -> float:
    key: Callable[[JobQueued], str] = (
        (lambda e: e.route) if hasattr(JobQueued, "route") else (lambda e: e.labelset_token)
    )
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.process_time()
        for _ in range(CALLS):
            queued.subject()
            key(queued)
        best = min(best, time.process_time() - began)
    return best / CALLS * 1e6


if __name__ == "__main__":
    spec = JobSpec(uses="noop")
    event = JobQueued(
        workflow_id="wf-1", job="j", attempt=1, spec=spec, queued_at=datetime.now(UTC)
    )
    print(f"subject and label set of a JobQueued: {per_call(event):.2f} us")
