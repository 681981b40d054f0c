"""A minimal in-test job runner and helpers to drive the engine on a real nats-server.

The runner stands in for workers: it takes the queued jobs a recording dispatcher saw appended,
claims each through the real job actor and event store (CAS), and reports an outcome chosen by
the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from actors import job
from actors._state import updated
from actors.commands import ClaimJob, CompleteJob, ConfirmCancelled, FailJob
from actors.engine import Engine, EngineSettings
from actors.job import ClaimRefused, JobState
from events import codec, subjects
from events.base import RecordedEvent
from events.catalog import JobEvent, JobQueued, JobStatus
from events.errors import ConcurrencyConflict
from events.requests import CancelRequest, StartRequest, request_msg_id
from events.store import ActorRef, EventStore


@dataclass(frozen=True)
class Outcome:
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    retryable: bool = True
    hang: bool = False  # never report: stands for a long job, cancelled or timed out


Behaviour = Callable[[JobState], Outcome]


def succeed(state: JobState) -> Outcome:
    return Outcome()


@dataclass
class Dispatched:
    workflow_id: str
    job: str
    attempt: int
    labels: tuple[str, ...]
    uses: str | None
    not_before: datetime | None


class RecordingDispatcher:
    """Stands in for the workers' label-set consumers: records every ``JobQueued`` stored in the
    log (an ordered consumer: a core subscription would also see appends that CAS refused, and
    see them before a read of the log can) and queues it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Dispatched] = asyncio.Queue()
        self.seen: list[Dispatched] = []
        self._subscription: Any = None

    async def watch(self, nc: NATS) -> None:
        if self._subscription is None:
            subject = subjects.events_of_type("JobQueued")
            self._subscription = await nc.jetstream().subscribe(
                subject, cb=self._on_queued, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )

    async def _on_queued(self, msg: Msg) -> None:
        queued = codec.decode(msg.data)
        assert isinstance(queued, JobQueued)
        item = Dispatched(
            queued.workflow_id,
            queued.job,
            queued.attempt,
            tuple(queued.spec.labels),
            queued.spec.uses,
            queued.not_before,
        )
        self.seen.append(item)
        await self.queue.put(item)


class InTestRunner:
    def __init__(self, store: EventStore, dispatcher: RecordingDispatcher, behaviour: Behaviour):
        self.store = store
        self.dispatcher = dispatcher
        self.behaviour = behaviour
        self.ran: list[tuple[str, str, int]] = []
        self.hanging: list[tuple[str, str, int]] = []  # (wf, job, epoch) left running
        self._task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[None]] = set()

    def start(self) -> InTestRunner:
        self._task = asyncio.create_task(self._loop())
        return self

    async def stop(self) -> None:
        for task in [*self._jobs, *([self._task] if self._task else [])]:
            task.cancel()
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            item = await self.dispatcher.queue.get()
            task = asyncio.create_task(self._run(item))
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    async def _run(self, item: Dispatched) -> None:
        if item.not_before is not None:
            # Stands in for the dispatcher's message schedule: the job is not claimable before.
            wait = (item.not_before - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
        actor = ActorRef.job(item.workflow_id, item.job)
        state = await self._claim(actor, item)
        if state is None:
            return
        self.ran.append((item.workflow_id, item.job, state.attempt))
        outcome = self.behaviour(state)
        if outcome.hang:
            self.hanging.append((item.workflow_id, item.job, state.epoch))
            return
        now = datetime.now(UTC)
        ids = {"workflow_id": item.workflow_id, "job": item.job, "now": now}
        command: CompleteJob | FailJob
        if outcome.error is None:
            command = CompleteJob(
                **ids, epoch=state.epoch, worker_id="runner", outputs=outcome.outputs
            )
        else:
            command = FailJob(
                **ids,
                epoch=state.epoch,
                worker_id="runner",
                error=outcome.error,
                retryable=outcome.retryable,
            )
        await self._append(actor, lambda current: job.decide(current, command))

    async def _claim(self, actor: ActorRef, item: Dispatched) -> JobState | None:
        def claim(current: JobState) -> list[Any]:
            command = ClaimJob(
                workflow_id=item.workflow_id,
                job=item.job,
                attempt=item.attempt,
                worker_id="runner",
                lease_ttl=30,
                now=datetime.now(UTC),
            )
            return list(job.decide(current, command))

        try:
            return await self._append(actor, claim)
        except ClaimRefused:
            return None

    async def complete(self, wf: str, name: str, epoch: int, **outputs: str) -> None:
        """Report a hanging job's success, when the test says (its worker finishing late)."""
        command = CompleteJob(
            workflow_id=wf,
            job=name,
            epoch=epoch,
            worker_id="runner",
            outputs=outputs,
            now=datetime.now(UTC),
        )
        await self._append(ActorRef.job(wf, name), lambda current: job.decide(current, command))

    async def fail(self, wf: str, name: str, epoch: int, error: str = "failed") -> None:
        """Report a hanging job's (retryable) failure, when the test says."""
        command = FailJob(
            workflow_id=wf,
            job=name,
            epoch=epoch,
            worker_id="runner",
            error=error,
            now=datetime.now(UTC),
        )
        await self._append(ActorRef.job(wf, name), lambda current: job.decide(current, command))

    async def confirm_cancelled(self, wf: str, name: str, epoch: int) -> None:
        command = ConfirmCancelled(
            workflow_id=wf, job=name, epoch=epoch, worker_id="runner", now=datetime.now(UTC)
        )
        await self._append(ActorRef.job(wf, name), lambda current: job.decide(current, command))

    async def _append(self, actor: ActorRef, decision: Callable[[JobState], list[Any]]) -> JobState:
        for _ in range(20):
            loaded = await self.store.read_tolerant(actor.filter)
            parsed = subjects.parse_event_subject(actor.filter.replace(">", "x"))
            assert parsed is not None and parsed.job is not None
            wf, name = parsed.workflow_id, parsed.job
            current = job.replay(loaded.events, JobState(workflow_id=wf, job=name))
            current = updated(current, last_seq=loaded.last_seq)
            events = decision(current)
            try:
                await self.store.append(
                    actor,
                    events,
                    expected_seq=current.last_seq,
                    command_id=f"runner-{id(events)}-{current.last_seq}",
                )
            except ConcurrencyConflict:
                continue
            return job.replay(events, current)
        raise AssertionError(f"runner could not append to {actor}")


async def start_workflow(nc: NATS, wf_id: str, definition: dict[str, Any], **fields: Any) -> None:
    request = StartRequest(workflow_id=wf_id, definition=definition, **fields)
    await nc.jetstream().publish(
        request.subject(),
        request.model_dump_json().encode(),
        headers={"Nats-Msg-Id": request_msg_id(request)},
    )


async def cancel_workflow(nc: NATS, wf_id: str, reason: str = "test") -> None:
    request = CancelRequest(workflow_id=wf_id, reason=reason)
    await nc.jetstream().publish(request.subject(), request.model_dump_json().encode())


def types(history: list[RecordedEvent]) -> list[str]:
    """``wf.<Type>`` / ``job.<name>.<Type>`` of each event, in order."""
    kinds = []
    for recorded in history:
        parsed = subjects.parse_event_subject(recorded.subject)
        assert parsed is not None, recorded.subject
        where = "wf" if parsed.job is None else f"job.{parsed.job}"
        kinds.append(f"{where}.{parsed.event_type}")
    return kinds


def ended(history: list[RecordedEvent]) -> str | None:
    for recorded in history:
        name = recorded.event.event_type
        if name in ("WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled"):
            return name
    return None


def job_status(history: list[RecordedEvent], name: str) -> JobStatus:
    events = [r for r in history if isinstance(r.event, JobEvent) and r.event.job == name]
    return job.replay(events).status if events else JobStatus.PENDING


FAST = EngineSettings(ack_wait=2.0, poll_interval=0.2, lease_ttl=2.0, renew_every=0.25)


async def running_engine(nc: NATS, dispatcher: RecordingDispatcher, **settings: Any) -> Engine:
    """An engine owning what partitions it can get, its queued jobs recorded by ``dispatcher``."""
    await dispatcher.watch(nc)
    engine = Engine(nc, settings=EngineSettings(**{**FAST.__dict__, **settings}))
    await engine.start()
    return engine
