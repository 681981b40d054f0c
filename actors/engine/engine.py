"""The engine: consumes commands, the events it reacts to, and fired timers; drives the actors.

Three durable pull consumers (shared by every engine process, so engines share the work):
``<prefix>-commands`` on JW_COMMANDS, ``<prefix>-events`` on JW_EVENTS (filtered to what the
engine reacts to) and ``<prefix>-timers`` on JW_TIMERS. A message is acked only once everything it
caused is in the log (or published), so a killed engine loses nothing: JetStream redelivers.
Reactions are idempotent (CAS + state checks + msg-id de-dup), so a redelivery is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionReconnectingError, NoRespondersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from pydantic import ValidationError

from actors import job, workflow
from actors.commands import (
    Advance,
    CancelWorkflow,
    RequeueJob,
    StartWorkflow,
    TimeoutJob,
    TimeoutWorkflow,
)
from actors.definitions import parse_workflow
from actors.engine import reactions
from actors.engine.host import Decision, WorkflowHost, decision_of
from actors.engine.settings import EngineSettings
from actors.engine.timers import (
    TIMERS,
    JobTimeoutTimer,
    RetryTimer,
    Timers,
    WorkflowTimeoutTimer,
)
from events import subjects
from events.base import Event
from events.codec import decode
from events.dead_letters import record_dead_letter
from events.errors import InvalidWorkflow, JetworkError, UndecodableEvent, WorkflowNotFound
from events.pull import PullFeed
from events.requests import REQUESTS, CancelRequest, StartRequest
from events.store import EventStore

_log = structlog.get_logger("jetwork.engine")
Clock = Callable[[], datetime]
# After this many deliveries a message that keeps failing is dead-lettered instead of retried.
_MAX_DELIVERIES = 5
# Deliveries of a command for a workflow that cannot be found before it is dead-lettered.
_NOT_FOUND_TRIES = 3
# Decisions whose events were reacted to inline, remembered until the consumer delivers them.
_REACTED_MEMORY = 100_000
# Trouble that passes by itself (a restarting server, a leader election, a lost connection): the
# message is retried for as long as it lasts and never dead-lettered for it, or a long outage
# would throw away the commands and events that arrived just before it.
_TRANSIENT = (
    TimeoutError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    OutboundBufferLimitError,
)


class DispatchPort(Protocol):
    async def dispatch(
        self,
        *,
        workflow_id: str,
        job: str,
        attempt: int,
        labels: Sequence[str],
        uses: str | None,
        not_before: datetime | None,
        now: datetime,
    ) -> None: ...


class Refused(JetworkError):
    """Input that can never be processed: dead-letter it and move on."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        nc: NATS,
        *,
        settings: EngineSettings | None = None,
        dispatcher: DispatchPort | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._nc = nc
        self._settings = settings or EngineSettings()
        self._store = EventStore(nc)
        self._host = WorkflowHost(nc, self._store, cache_size=self._settings.cache_size)
        self._timers = Timers(nc)
        self._dispatcher = dispatcher or _default_dispatcher(nc)
        self._clock = clock
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._feeds: list[PullFeed] = []
        self._locks: dict[str, list[Any]] = {}  # workflow id -> [lock, users]
        self._reacted_decisions: OrderedDict[str, None] = OrderedDict()
        self._limit = asyncio.Semaphore(self._settings.concurrency)

    @property
    def host(self) -> WorkflowHost:
        return self._host

    async def start(self) -> None:
        self._stopping.clear()  # an engine that was stopped may be started again
        js = self._nc.jetstream()
        prefix = self._settings.consumer_prefix
        loops = [
            ("commands", subjects.COMMANDS_STREAM, (subjects.COMMANDS_ALL,), self._on_commands),
            ("events", subjects.EVENTS_STREAM, reactions.REACTED_TO, self._on_events),
            ("timers", subjects.TIMERS_STREAM, ("timer.fire.>",), self._on_timers),
        ]
        for name, stream, filters, handler in loops:
            feed = await self._bind(js, stream, f"{prefix}-{name}", filters)
            self._feeds.append(feed)
            self._tasks.append(asyncio.create_task(self._consume(name, feed, handler)))
        _log.info("engine started", consumers=[f"{prefix}-{name}" for name, *_ in loops])

    async def stop(self) -> None:
        """Finish the batches in hand, then return. Unacked work is redelivered elsewhere."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for feed in self._feeds:
            await feed.stop()
        self._feeds.clear()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    # --- consuming --------------------------------------------------------------------------

    async def _bind(
        self, js: JetStreamContext, stream: str, durable: str, filters: Sequence[str]
    ) -> PullFeed:
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._settings.ack_wait,
            max_deliver=-1,
            max_ack_pending=max(1000, self._settings.batch * 8),
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=list(filters) if len(filters) > 1 else None,
        )
        await js.add_consumer(stream, config)  # create, or update to this configuration
        feed = PullFeed(self._nc, stream=stream, consumer=durable, window=self._settings.batch * 2)
        await feed.start()
        return feed

    async def _consume(
        self,
        name: str,
        feed: PullFeed,
        handle: Callable[[list[Msg]], Awaitable[None]],
    ) -> None:
        """Pull and hand batches over without waiting for earlier ones to finish (bounded)."""
        poll = self._settings.poll_interval
        in_flight: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self._settings.batches_in_flight)
        while not self._stopping.is_set():
            await slots.acquire()
            try:
                messages = await feed.next_batch(self._settings.batch, timeout=poll)
            except Exception as exc:  # connection trouble: keep trying, never die
                slots.release()
                _log.warning("pull failed", consumer=name, error=str(exc) or type(exc).__name__)
                await asyncio.sleep(poll)
                continue
            if not messages:
                slots.release()
                continue
            task = asyncio.create_task(self._handle_batch(name, messages, handle, slots))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _handle_batch(
        self,
        name: str,
        messages: list[Msg],
        handle: Callable[[list[Msg]], Awaitable[None]],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await handle(messages)
        except Exception:  # a bug must not stop the engine; the messages are redelivered
            _log.exception("batch failed", consumer=name, size=len(messages))
        finally:
            slots.release()

    async def _per_workflow(
        self, groups: dict[str, list[Msg]], work: Callable[[str, list[Msg]], Awaitable[None]]
    ) -> None:
        async def guarded(wf_id: str, messages: list[Msg]) -> None:
            # One workflow at a time across concurrent batches: its reactions never race
            # each other (other engines may still race them: CAS settles that).
            async with self._limit, self._workflow_lock(wf_id):
                try:
                    await work(wf_id, messages)
                except Exception as exc:
                    await self._failed(messages, exc, workflow_id=wf_id)
                    return
            await asyncio.gather(*(msg.ack() for msg in messages))

        await asyncio.gather(*(guarded(wf, msgs) for wf, msgs in groups.items()))

    @contextlib.asynccontextmanager
    async def _workflow_lock(self, wf_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(wf_id)
        if entry is None:
            entry = self._locks[wf_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[wf_id]

    async def _failed(self, messages: list[Msg], exc: Exception, *, workflow_id: str) -> None:
        refused = isinstance(exc, Refused | InvalidWorkflow | WorkflowNotFound)
        transient = not refused and _is_transient(exc)
        for msg in messages:
            if refused or (not transient and msg.metadata.num_delivered >= _MAX_DELIVERIES):
                if not refused:
                    _log.error("giving up on a message", workflow=workflow_id, error=repr(exc))
                await self._dead_letter(msg, str(exc) or repr(exc))
                await msg.ack()
            else:
                _log.warning("will retry", workflow=workflow_id, error=str(exc) or repr(exc))
                await msg.nak(delay=min(30.0, 0.5 * 2**msg.metadata.num_delivered))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        source = msg.subject.split(".", 1)[0]
        source = {"cmd": "commands", "evt": "events", "timer": "timers"}.get(source, source)
        await record_dead_letter(
            self._nc,
            source=source,
            subject=msg.subject,
            payload=msg.data,
            reason=reason,
            seq=msg.metadata.sequence.stream,
        )

    # --- commands ---------------------------------------------------------------------------

    async def _on_commands(self, messages: list[Msg]) -> None:
        groups: dict[str, list[Msg]] = defaultdict(list)
        for msg in messages:
            try:
                request = REQUESTS.validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(msg, f"malformed command: {_summary(exc)}")
                await msg.ack()
                continue
            groups[request.workflow_id].append(msg)
        await self._per_workflow(groups, self._run_commands)

    async def _run_commands(self, wf_id: str, messages: list[Msg]) -> None:
        for msg in messages:
            request = REQUESTS.validate_json(msg.data)
            if isinstance(request, StartRequest):
                await self._start(request)
            else:
                await self._cancel(request)

    async def _start(self, request: StartRequest) -> None:
        definition = parse_workflow(request.definition, source=f"workflow {request.workflow_id}")
        command = StartWorkflow(
            workflow_id=request.workflow_id,
            definition=definition,
            inputs=request.inputs,
            idempotency_key=request.idempotency_key,
            now=self._clock(),
        )
        # A workflow this engine has not seen is most likely new: decide on an empty state
        # without reading the log first. CAS (expected sequence 0) makes that create-if-absent;
        # if it exists after all, the conflict reloads it and the start is a no-op.
        known = self._host.cached(request.workflow_id)
        appended = await self._execute(
            request.workflow_id,
            lambda state: workflow.decide(state, command),
            what="start",
            state=known or workflow.WorkflowState(workflow_id=request.workflow_id),
        )
        if appended:
            _log.info("workflow started", workflow=request.workflow_id, name=definition.name)

    async def _cancel(self, request: CancelRequest) -> None:
        command = CancelWorkflow(
            workflow_id=request.workflow_id,
            reason=request.reason,
            force=request.force,
            now=self._clock(),
        )
        await self._execute(
            request.workflow_id, lambda state: workflow.decide(state, command), what="cancel"
        )

    # --- events -----------------------------------------------------------------------------

    async def _on_events(self, messages: list[Msg]) -> None:
        groups: dict[str, list[Msg]] = defaultdict(list)
        for msg in messages:
            try:
                decode(msg.data, subject=msg.subject, seq=msg.metadata.sequence.stream)
            except UndecodableEvent as exc:
                await self._dead_letter(msg, str(exc))
                await msg.ack()
                continue
            groups[msg.subject.split(".")[1]].append(msg)
        await self._per_workflow(groups, self._react)

    async def _react(self, wf_id: str, messages: list[Msg]) -> None:
        # Events this engine appended were reacted to when they were appended: skip them.
        fresh = [msg for msg in messages if not self._reacted(msg)]
        if not fresh:
            return
        events = [decode(msg.data, subject=msg.subject) for msg in fresh]
        if reactions.nothing_to_do(self._host.cached(wf_id), events):
            return
        newest = max(msg.metadata.sequence.stream for msg in fresh)
        state = await self._host.state(wf_id, min_seq=newest)
        await self._carry_out(wf_id, reactions.plan(state, events), state)

    def _reacted(self, msg: Msg) -> bool:
        decision = decision_of((msg.headers or {}).get("Nats-Msg-Id"))
        return bool(decision) and decision in self._reacted_decisions

    async def _execute(
        self,
        wf_id: str,
        decision: Decision,
        *,
        what: str,
        state: workflow.WorkflowState | None = None,
    ) -> list[Event]:
        """Decide and append, then react to what was appended right away (inline).

        Reacting here saves every hop a round trip through the event consumer: a job queued by
        ``Advance`` is dispatched at once. The decision is remembered only once its reaction is
        complete, so the consumer still reacts if this failed half-way; both happen under the
        workflow's lock, so the consumer never sees an event whose inline reaction is running.
        """
        appended = await self._host.execute(wf_id, decision, what=what, state=state)
        if reactions.needs_reaction(appended.events):
            current = await self._host.state(wf_id, min_seq=appended.last_seq)
            await self._carry_out(wf_id, reactions.plan(current, appended.events), current)
        if appended.events:
            self._reacted_decisions[appended.decision_id] = None
            while len(self._reacted_decisions) > _REACTED_MEMORY:
                self._reacted_decisions.popitem(last=False)
        return appended.events

    async def _carry_out(
        self, wf_id: str, plan: reactions.Plan, state: workflow.WorkflowState
    ) -> None:
        now = self._clock()
        await asyncio.gather(
            *(
                self._dispatcher.dispatch(
                    workflow_id=wf_id,
                    job=item.job,
                    attempt=item.attempt,
                    labels=item.labels,
                    uses=item.uses,
                    not_before=item.not_before,  # type: ignore[arg-type]
                    now=now,
                )
                for item in plan.dispatches
            ),
            *(self._timers.arm(timer) for timer in plan.timers),
            *(
                self._nc.publish(subjects.cancel_notice(wf_id, name), b"")
                for name in plan.cancel_notices
            ),
        )
        for name, attempt in plan.requeue_now:
            await self._requeue(wf_id, name, attempt)
        if plan.advance:
            # Nothing above changed the workflow's log unless a requeue ran: reuse the state.
            await self._advance(wf_id, None if plan.requeue_now else state)

    async def _advance(
        self, wf_id: str, state: workflow.WorkflowState | None = None
    ) -> list[Event]:
        return await self._execute(
            wf_id,
            lambda current: workflow.decide(current, Advance(workflow_id=wf_id, now=self._clock())),
            what="advance",
            state=state,
        )

    async def _requeue(self, wf_id: str, name: str, attempt: int) -> None:
        def decision(state: workflow.WorkflowState) -> list[Event]:
            command = RequeueJob(workflow_id=wf_id, job=name, attempt=attempt, now=self._clock())
            return list(job.decide(state.job(name), command))

        await self._execute(wf_id, decision, what="requeue")

    # --- timers -----------------------------------------------------------------------------

    async def _on_timers(self, messages: list[Msg]) -> None:
        groups: dict[str, list[Msg]] = defaultdict(list)
        for msg in messages:
            try:
                timer = TIMERS.validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(msg, f"malformed timer: {_summary(exc)}")
                await msg.ack()
                continue
            groups[timer.workflow_id].append(msg)
        await self._per_workflow(groups, self._fire)

    async def _fire(self, wf_id: str, messages: list[Msg]) -> None:
        for msg in messages:
            timer = TIMERS.validate_json(msg.data)
            if isinstance(timer, WorkflowTimeoutTimer):
                await self._time_out_workflow(wf_id)
            elif isinstance(timer, JobTimeoutTimer):
                await self._time_out_job(wf_id, timer)
            elif isinstance(timer, RetryTimer):
                await self._requeue(wf_id, timer.job, timer.attempt)

    async def _time_out_workflow(self, wf_id: str) -> None:
        def decision(state: workflow.WorkflowState) -> list[Event]:
            return workflow.decide(state, TimeoutWorkflow(workflow_id=wf_id, now=self._clock()))

        await self._execute(wf_id, decision, what="workflow timeout")

    async def _time_out_job(self, wf_id: str, timer: JobTimeoutTimer) -> None:
        def decision(state: workflow.WorkflowState) -> list[Event]:
            command = TimeoutJob(
                workflow_id=wf_id, job=timer.job, epoch=timer.epoch, now=self._clock()
            )
            return list(job.decide(state.job(timer.job), command))

        await self._execute(wf_id, decision, what="job timeout")


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, JetworkError):
        return exc.retryable
    return isinstance(exc, _TRANSIENT)


def _summary(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return "; ".join(parts)


def _default_dispatcher(nc: NATS) -> DispatchPort:
    from events.dispatch import Dispatcher  # type: ignore[import-not-found, unused-ignore]

    dispatcher: DispatchPort = Dispatcher(nc)
    return dispatcher
