"""Helpers for fault tests: a job runner that survives server outages, and log checks.

``ResilientRunner`` is the in-test runner of ``tests/engine_harness.py`` with two additions a fault
test needs: a job takes some time (so a fault lands mid-run), and a claim or report that fails
with a store error is tried again as a *redelivery* (delivery + 1), which is what JetStream does to
a real worker's dispatch message when the worker could not finish it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from actors import job
from actors.commands import ClaimJob, CompleteJob
from actors.job import ClaimRefused, JobState
from events.base import RecordedEvent
from events.errors import JetworkError
from events.store import ActorRef, EventStore
from tests.engine_harness import (
    Dispatched,
    InTestRunner,
    RecordingDispatcher,
    ended,
    succeed,
    types,
)


class ResilientRunner(InTestRunner):
    def __init__(
        self, store: EventStore, dispatcher: RecordingDispatcher, *, job_seconds: float = 0.0
    ) -> None:
        super().__init__(store, dispatcher, succeed)
        self.job_seconds = job_seconds
        self.redeliveries = 0
        self.finished_at: list[float] = []  # monotonic time of each reported success
        self.trouble: list[str] = []  # why claims or reports were retried, for diagnosis

    async def _run(self, item: Dispatched) -> None:
        try:
            await self._run_until_done(item)
        except BaseException as exc:
            self.trouble.append(f"{item.workflow_id}.{item.job} gave up: {exc!r}"[:300])
            raise

    async def _run_until_done(self, item: Dispatched) -> None:
        delivery = 1
        while True:
            try:
                await self._attempt(item, delivery)
                return
            except (JetworkError, TimeoutError) as exc:
                if isinstance(exc, ClaimRefused) and not exc.retryable:
                    return
                self.trouble.append(f"{item.workflow_id}.{item.job}: {exc!r}"[:300])
                # The dispatch was not acked: JetStream would hand it out again after the lease.
                self.redeliveries += 1
                delivery += 1
                await asyncio.sleep(0.25)

    async def _attempt(self, item: Dispatched, delivery: int) -> None:
        actor = ActorRef.job(item.workflow_id, item.job)

        def claim(current: JobState) -> list[Any]:
            command = ClaimJob(
                workflow_id=item.workflow_id,
                job=item.job,
                attempt=item.attempt,
                worker_id="runner",
                delivery=delivery,
                lease_ttl=30,
                now=datetime.now(UTC),
            )
            return list(job.decide(current, command))

        state = await self._append(actor, claim)
        self.ran.append((item.workflow_id, item.job, state.attempt))
        await asyncio.sleep(self.job_seconds)
        command = CompleteJob(
            workflow_id=item.workflow_id,
            job=item.job,
            epoch=state.epoch,
            worker_id="runner",
            outputs={},
            now=datetime.now(UTC),
        )
        await self._append(actor, lambda current: job.decide(current, command))
        self.finished_at.append(time.monotonic())


def chain(length: int) -> dict[str, Any]:
    jobs: dict[str, Any] = {"j0": {"run": "true"}}
    jobs |= {f"j{i}": {"run": "true", "needs": [f"j{i - 1}"]} for i in range(1, length)}
    return {"name": f"chain{length}", "jobs": jobs}


async def history_or_none(store: EventStore, wf: str) -> list[RecordedEvent] | None:
    """The history once the workflow ended; None while it runs or the server is unreachable."""
    try:
        history = await store.history(wf)
    except JetworkError:
        return None
    return history if ended(history) else None


async def all_histories(store: EventStore, ids: list[str]) -> list[list[RecordedEvent]]:
    """Every workflow's history once all ended; an AssertionError naming the stragglers if not."""
    histories: list[list[RecordedEvent]] = []
    waiting: list[str] = []
    for wf in ids:
        try:
            history = await store.history(wf)
        except JetworkError as exc:
            raise AssertionError(f"{wf}: {exc}") from None
        if not ended(history):
            last = types(list(history))[-1] if history else "nothing"
            waiting.append(f"{wf} (last: {last})")
        histories.append(history)
    assert not waiting, f"{len(waiting)} not ended: {', '.join(waiting)}"
    return histories


def assert_chain_history_is_exact(history: Sequence[RecordedEvent], length: int) -> None:
    """Succeeded, every job queued once, completed once, nothing rejected, in chain order."""
    kinds = types(list(history))
    assert ended(list(history)) == "WorkflowSucceeded", kinds
    counts = Counter(kinds)
    assert counts["wf.WorkflowStarted"] == 1, kinds
    assert counts["wf.WorkflowSucceeded"] == 1, kinds
    for i in range(length):
        assert counts[f"job.j{i}.JobQueued"] == 1, kinds
        assert counts[f"job.j{i}.JobSucceeded"] == 1, kinds
        assert counts[f"job.j{i}.JobResultRejected"] == 0, kinds
    succeeded = [k for k in kinds if k.endswith(".JobSucceeded")]
    assert succeeded == [f"job.j{i}.JobSucceeded" for i in range(length)], kinds
    seqs = [r.seq for r in history]
    assert seqs == sorted(set(seqs))


def longest_pause(finished_at: list[float], since: float) -> float:
    """The longest time from ``since`` on during which no job completed."""
    points = [since, *sorted(t for t in finished_at if t > since)]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)
