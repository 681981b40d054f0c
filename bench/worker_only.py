"""W: the worker side alone. No engine: the driver queues jobs as the engine would (``JobQueued``
appended to each job actor, then the dispatch published), and one worker process drains them.

This isolates what a worker costs per job (its CPU, the server's CPU for its requests, its
messages) from the engine and the projector, which S1 measures all together.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bench.common import Deployment, Window
from bench.report import Result
from events.catalog import JobQueued, JobSpec
from events.dispatch import Dispatcher
from events.store import ActorRef

IN_FLIGHT = 256


async def queue_jobs(dep: Deployment, ids: list[str], spec: JobSpec) -> list[tuple[JobQueued, int]]:
    """Append ``JobQueued`` (attempt 1) to job ``j`` of every workflow id (no dispatch yet);
    returns each event with its sequence."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    store = dep.driver.store
    queued = [
        JobQueued(workflow_id=wf, job="j", attempt=1, spec=spec, queued_at=datetime.now(UTC))
        for wf in ids
    ]

    async def one(event: JobQueued) -> tuple[JobQueued, int]:
        async with limit:
            actor = ActorRef.job(event.workflow_id, event.job)
            seq = await store.append(
                actor, [event], expected_seq=0, command_id=f"{event.workflow_id}.q"
            )
            return event, seq

    return await asyncio.gather(*(one(event) for event in queued))


async def dispatch_all(
    dispatcher: Dispatcher, queued: list[tuple[JobQueued, int]], *, hint: bool
) -> None:
    limit = asyncio.Semaphore(IN_FLIGHT)
    now = datetime.now(UTC)

    async def one(event: JobQueued, seq: int) -> None:
        async with limit:
            await dispatcher.dispatch(
                workflow_id=event.workflow_id,
                job=event.job,
                attempt=event.attempt,
                labels=event.spec.labels,
                uses=event.spec.uses,
                not_before=None,
                now=now,
                queued=event if hint else None,
                queued_seq=seq if hint else None,
            )

    await asyncio.gather(*(one(event, seq) for event, seq in queued))


async def drain(
    dep: Deployment,
    count: int,
    *,
    variant: str,
    hint: bool = False,
    spec: JobSpec | None = None,
    scenario: str = "W",
    began_at: list[float] | None = None,
) -> Result:
    """Queue ``count`` no-op jobs, then dispatch them all and time the worker(s) draining them."""
    prefix = dep.next_prefix("wo")
    ids = [f"{prefix}-{i}" for i in range(count)]
    batch = dep.driver.expect(ids, jobs=count)
    queued = await queue_jobs(dep, ids, spec or JobSpec(uses="noop"))
    dispatcher = Dispatcher(dep.nc)
    window = Window(dep).open()
    began = time.time()
    if began_at is not None:
        began_at.append(began)  # when the dispatches start (the jobs were queued before)
    await dispatch_all(dispatcher, queued, hint=hint)
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
