"""Drive single jobs the way the engine does: record the label set, append ``JobQueued``.

The appended event is the dispatch (its label set's consumer delivers it to workers). Worker tests
queue, requeue and cancel jobs with these helpers and read the job actor's history back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.aio.client import Client as NATS

from actors.commands import CancelJob, TimeoutJob
from actors.engine.labelsets import LabelSets
from actors.job import decide, replay
from events import subjects
from events.catalog import JobEvent, JobQueued, JobRetryScheduled, JobSpec, JobStarted
from events.definition import Concurrency, RateLimit, RetryPolicy
from events.labels import CONSUMER_PREFIX
from events.store import ActorRef, EventStore
from sdk.worker import Worker
from sdk.worker.config import WorkerConfig
from tests.claims import claims

E = TypeVar("E", bound=JobEvent)


def fast_config(nats_url: str, **overrides: Any) -> WorkerConfig:
    """Worker settings that keep tests quick: 2 s lease, short polls and checks."""
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "lease_ttl": 2.0,
        "heartbeat_interval": 0.5,
        "poll_interval": 0.25,
        "cancellation_check_interval": 0.5,
        "log_batch_interval": 0.05,
        "kill_grace": 1.0,
        "shutdown_grace": 10.0,  # a failing test must not wait for a `sleep 60` forever
    }
    values.update(overrides)
    return WorkerConfig(**values)


class JobsHarness:
    """Queues jobs (as the engine would) and reads their job actors back."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.store = EventStore(nc)
        self.labelsets = LabelSets(nc)

    async def queue(
        self,
        workflow_id: str,
        job: str,
        *,
        run: str | None = None,
        uses: str | None = None,
        with_: dict[str, Any] | None = None,
        labels: Sequence[str] = (),
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        upstream_outputs: dict[str, dict[str, str]] | None = None,
        retry: RetryPolicy | None = None,
        attempt: int = 1,
        not_before: datetime | None = None,
        rate_limit: RateLimit | None = None,
        concurrency: Concurrency | None = None,
        priority: int | None = None,
    ) -> JobQueued:
        """Append ``JobQueued`` (CAS on the actor's current last sequence): that dispatches it."""
        spec = JobSpec(
            run=run,
            uses=uses,
            with_=with_ or {},
            env=env or {},
            labels=tuple(labels),
            timeout=timeout,
            upstream_outputs=upstream_outputs or {},
            rate_limit=rate_limit,
            concurrency=concurrency,
            priority=priority,
        )
        queued = JobQueued(
            workflow_id=workflow_id,
            job=job,
            attempt=attempt,
            spec=spec,
            retry=retry or RetryPolicy(),
            queued_at=datetime.now(UTC),
            not_before=not_before,
        )
        await self._append_and_dispatch(queued)
        return queued

    async def requeue(self, workflow_id: str, job: str) -> JobQueued:
        """What the engine does on ``JobRetryScheduled``: queue the next attempt, delayed."""
        state = replay(await self.store.load(ActorRef.job(workflow_id, job)))
        scheduled = (await self.events(workflow_id, job, JobRetryScheduled))[-1]
        queued = JobQueued(
            workflow_id=workflow_id,
            job=job,
            attempt=scheduled.attempt,
            spec=state.spec,
            retry=state.retry,
            on_failure=state.on_failure,
            queued_at=datetime.now(UTC),
            not_before=scheduled.not_before,
            prior_epoch=state.epoch,  # as the job actor records it: the next claim's epoch follows
        )
        await self._append_and_dispatch(queued)
        return queued

    async def _append_and_dispatch(self, queued: JobQueued) -> None:
        await self.labelsets.register([queued.route])
        actor = ActorRef.job(queued.workflow_id, queued.job)
        await self.store.append(
            actor,
            [queued],
            expected_seq=await self.store.last_seq(actor),
            command_id=f"queue.{queued.workflow_id}.{queued.job}.{queued.attempt}",
        )

    async def cancel(
        self, workflow_id: str, job: str, reason: str = "cancelled by test", *, notice: bool = True
    ) -> None:
        """Decide ``CancelJob`` on the job actor, append it, push the cancel notice (if asked)."""
        actor = ActorRef.job(workflow_id, job)
        recorded = await self.store.load(actor)
        state = replay(recorded)
        command = CancelJob(workflow_id=workflow_id, job=job, reason=reason, now=datetime.now(UTC))
        events = decide(state, command)
        await self.store.append(
            actor, events, expected_seq=state.last_seq, command_id=f"cancel.{workflow_id}.{job}"
        )
        if notice:
            await self.nc.publish(subjects.cancel_notice(workflow_id, job), b"")

    async def time_out(self, workflow_id: str, job: str) -> None:
        """What the engine does when a running job's timeout timer fires."""
        actor = ActorRef.job(workflow_id, job)
        state = replay(await self.store.load(actor))
        command = TimeoutJob(
            workflow_id=workflow_id, job=job, epoch=state.epoch, now=datetime.now(UTC)
        )
        await self.store.append(
            actor,
            decide(state, command),
            expected_seq=state.last_seq,
            command_id=f"timeout.{workflow_id}.{job}.{state.epoch}",
        )

    async def events(self, workflow_id: str, job: str, kind: type[E] | None = None) -> list[Any]:
        """The job actor's events (of ``kind``). Asked for ``JobStarted``: every claim, also one
        a short run's result carries (``tests.claims``)."""
        recorded = await self.store.load(ActorRef.job(workflow_id, job))
        if kind is JobStarted:
            return claims(recorded)
        events = [r.event for r in recorded]
        return [e for e in events if kind is None or isinstance(e, kind)]

    async def types(self, workflow_id: str, job: str) -> list[str]:
        return [e.event_type for e in await self.events(workflow_id, job)]


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def unfinished_dispatches(nc: NATS) -> int:
    """Queued jobs not acknowledged by a worker yet, over every label set's consumer."""
    js = nc.jetstream()
    return sum(
        int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        for info in await js.consumers_info(subjects.EVENTS_STREAM)
        if (info.name or "").startswith(CONSUMER_PREFIX)
    )


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    """Start the workers together, and stop them together however the block ends."""
    await asyncio.gather(*(w.start() for w in workers))
    try:
        yield
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
