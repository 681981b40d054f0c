"""W: the worker side alone. No engine: the driver queues jobs as the engine would (the label
set recorded, ``JobQueued`` appended to each job actor: the event is the dispatch), and one worker
process drains them.

This isolates what a worker costs per job (its CPU, the server's CPU for its requests, its
messages) from the engine and the projector, which S1 measures all together. The timing starts
before the first append: the driver's appends overlap the worker's first claims.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from actors.engine.labelsets import LabelSets
from bench.common import Deployment, Window
from bench.report import Result
from events.catalog import JobQueued, JobSpec
from events.store import ActorRef

IN_FLIGHT = 256


async def queue_jobs(dep: Deployment, ids: list[str], spec: JobSpec) -> None:
    """Append ``JobQueued`` (attempt 1) to job ``j`` of every workflow id."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    store = dep.driver.store
    queued = [
        JobQueued(workflow_id=wf, job="j", attempt=1, spec=spec, queued_at=datetime.now(UTC))
        for wf in ids
    ]
    await LabelSets(dep.nc).register({event.labelset_token for event in queued})

    async def one(event: JobQueued) -> None:
        async with limit:
            actor = ActorRef.job(event.workflow_id, event.job)
            await store.append(actor, [event], expected_seq=0, command_id=f"{event.workflow_id}.q")

    await asyncio.gather(*(one(event) for event in queued))


async def drain(
    dep: Deployment,
    count: int,
    *,
    variant: str,
    spec: JobSpec | None = None,
    scenario: str = "W",
    began_at: list[float] | None = None,
) -> Result:
    """Queue ``count`` no-op jobs and time the worker(s) draining them; ``began_at`` receives
    when the timing started (the first append)."""
    prefix = dep.next_prefix("wo")
    ids = [f"{prefix}-{i}" for i in range(count)]
    await dep.driver.observe(jobs=True)
    batch = dep.driver.expect(ids, jobs=count)
    window = Window(dep).open()
    began = time.time()
    if began_at is not None:
        began_at.append(began)
    await queue_jobs(dep, ids, spec or JobSpec(uses="noop"))
    await asyncio.wait_for(batch.jobs_done.wait(), 600)
    ended = max(batch.jobs_seen.values())
    await asyncio.sleep(0.5)  # the last acks and heartbeats
    window.close()
    result = Result(
        scenario,
        variant,
        figures={"jobs/s": round(count / (ended - began), 1), "seconds": round(ended - began, 2)},
    )
    return window.fill(result, count)
