"""The engine: consumes commands, the events it reacts to, and fired timers; drives the actors.

Three durable pull consumers (shared by every engine process, so engines share the work):
``<prefix>-commands`` on JW_COMMANDS, ``<prefix>-events`` on JW_EVENTS (filtered to what the
engine reacts to) and ``<prefix>-timers`` on JW_TIMERS. A message is acked only once everything it
caused is in the log (or published), so a killed engine loses nothing: JetStream redelivers.
Reactions are idempotent (CAS + state checks + msg-id de-dup), so a redelivery is harmless.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from actors import job, workflow
from actors.commands import (
    Advance,
    CancelWorkflow,
    RequeueJob,
    StartWorkflow,
    TimeoutDispatch,
    TimeoutJob,
    TimeoutWorkflow,
)
from actors.engine import reactions
from actors.engine.definition_cache import DefinitionCache
from actors.engine.host import Decision, WorkflowHost, decision_of
from actors.engine.loops import Handler, MessageLoops, Refused
from actors.engine.settings import EngineSettings
from actors.engine.timers import (
    TIMERS,
    DispatchTimeoutTimer,
    JobTimeoutTimer,
    RetryTimer,
    Timer,
    Timers,
    WorkflowTimeoutTimer,
)
from events import subjects
from events.base import Event
from events.catalog import JobQueued
from events.codec import decode
from events.errors import InvalidWorkflow, UndecodableEvent
from events.requests import REQUESTS, CancelRequest, StartAnswer, StartRequest
from events.schedules import NearTimers
from events.store import EventStore

_log = structlog.get_logger("jetwork.engine")
Clock = Callable[[], datetime]
# Decisions whose events were reacted to inline, remembered until the consumer delivers them.
_REACTED_MEMORY = 100_000


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
        queued: JobQueued | None = None,
        queued_seq: int | None = None,
    ) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class Engine(MessageLoops):
    def __init__(
        self,
        nc: NATS,
        *,
        settings: EngineSettings | None = None,
        dispatcher: DispatchPort | None = None,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(nc, settings or EngineSettings())
        self._store = EventStore(nc)
        self._host = WorkflowHost(nc, self._store, cache_size=self._settings.cache_size)
        self._definitions = DefinitionCache()
        self._timers = Timers(nc)
        self._near = NearTimers(horizon=self._settings.near_timers, clock=clock)
        self._dispatcher = dispatcher or _default_dispatcher(nc, self._near)
        self._clock = clock
        self._reacted_decisions: OrderedDict[str, None] = OrderedDict()

    @property
    def host(self) -> WorkflowHost:
        return self._host

    async def start(self) -> None:
        prefix = self._settings.consumer_prefix
        loops: list[tuple[str, str, Sequence[str], str, Handler]] = [
            ("commands", subjects.COMMANDS_STREAM, (subjects.COMMANDS_ALL,), f"{prefix}-commands",
             self._on_commands),
            ("events", subjects.EVENTS_STREAM, reactions.REACTED_TO, f"{prefix}-events",
             self._on_events),
            ("timers", subjects.TIMERS_STREAM, ("timer.fire.>",), f"{prefix}-timers",
             self._on_timers),
        ]  # fmt: skip
        await self._start_loops(loops)
        _log.info("engine started", consumers=[durable for _, _, _, durable, _ in loops])

    async def stop(self) -> None:
        self._near.cancel()  # their durable schedules fire for whichever engine is alive
        await super().stop()

    # --- commands ---------------------------------------------------------------------------

    async def _on_commands(self, messages: list[Msg]) -> None:
        groups: dict[str, list[Msg]] = defaultdict(list)
        requests: dict[int, StartRequest | CancelRequest] = {}
        for msg in messages:
            try:
                request = REQUESTS.validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(msg, f"malformed command: {_summary(exc)}")
                await msg.ack()
                continue
            requests[id(msg)] = request
            groups[request.workflow_id].append(msg)

        async def run(wf_id: str, group: list[Msg]) -> None:
            for msg in group:
                request = requests[id(msg)]
                if isinstance(request, StartRequest):
                    await self._start(request)
                else:
                    await self._cancel(request)

        await self._per_workflow(groups, run)

    async def _start(self, request: StartRequest) -> None:
        try:
            created = await self._start_workflow(request)
        except (InvalidWorkflow, Refused) as exc:  # never startable: answer, then dead-letter
            refusal = StartAnswer(workflow_id=request.workflow_id, accepted=False, error=str(exc))
            await self._answer(request, refusal)
            raise
        await self._answer(
            request, StartAnswer(workflow_id=request.workflow_id, accepted=True, created=created)
        )

    async def _start_workflow(self, request: StartRequest) -> bool:
        # InvalidWorkflow reads "invalid workflow <source>: ...": the id alone names it.
        definition = self._definitions.parse(request.definition, source=request.workflow_id)
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
        return bool(appended)

    async def _answer(self, request: StartRequest, answer: StartAnswer) -> None:
        if request.reply_to is None:
            return
        try:
            await self._nc.publish(request.reply_to, answer.model_dump_json().encode())
        except Exception as exc:  # the answer is a courtesy: the log holds the outcome
            _log.warning("could not answer a start", workflow=request.workflow_id, error=repr(exc))

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
        decoded: dict[int, Event] = {}
        for msg in messages:
            if self._reacted(msg):
                # Appended by this engine and reacted to already (inline): nothing to decode.
                await msg.ack()
                continue
            seq = msg.metadata.sequence.stream
            try:
                decoded[seq] = decode(msg.data, subject=msg.subject, seq=seq)
            except UndecodableEvent as exc:
                await self._dead_letter(msg, str(exc))
                await msg.ack()
                continue
            groups[msg.subject.split(".")[1]].append(msg)

        async def react(wf_id: str, group: list[Msg]) -> None:
            await self._react(wf_id, group, decoded)

        await self._per_workflow(groups, react)

    async def _react(self, wf_id: str, messages: list[Msg], decoded: dict[int, Event]) -> None:
        # Events this engine appended were reacted to when they were appended: skip them.
        fresh = [msg for msg in messages if not self._reacted(msg)]
        if not fresh:
            return
        events = [decoded[msg.metadata.sequence.stream] for msg in fresh]
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
            current = appended.state or await self._host.state(wf_id, min_seq=appended.last_seq)
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
                    queued=item.queued,
                    queued_seq=item.queued_seq,
                )
                for item in plan.dispatches
            ),
            *(self._timers.arm(timer) for timer in plan.timers),
            *(
                self._nc.publish(subjects.cancel_notice(wf_id, name), b"")
                for name in plan.cancel_notices
            ),
        )
        for timer in plan.timers:  # armed durably above; a near one also fires in-process
            self._near.schedule(timer.due, self._firing(wf_id, timer), what=timer.timer_id())
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
            await self._on_timer(wf_id, TIMERS.validate_json(msg.data))

    def _firing(self, wf_id: str, timer: Timer) -> Callable[[], Awaitable[None]]:
        """The in-process firing of ``timer``: as its durable message would, under the lock."""

        async def fire() -> None:
            async with self._limit, self._workflow_lock(wf_id):
                await self._on_timer(wf_id, timer)

        return fire

    async def _on_timer(self, wf_id: str, timer: Timer) -> None:
        # Each action is checked against the log, so the second firing of a timer (in-process,
        # then durable) finds nothing to do.
        if isinstance(timer, WorkflowTimeoutTimer):
            await self._time_out_workflow(wf_id)
        elif isinstance(timer, JobTimeoutTimer):
            await self._time_out_job(wf_id, timer)
        elif isinstance(timer, RetryTimer):
            await self._requeue(wf_id, timer.job, timer.attempt)
        elif isinstance(timer, DispatchTimeoutTimer):
            await self._time_out_dispatch(wf_id, timer)

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

    async def _time_out_dispatch(self, wf_id: str, timer: DispatchTimeoutTimer) -> None:
        def decision(state: workflow.WorkflowState) -> list[Event]:
            command = TimeoutDispatch(
                workflow_id=wf_id, job=timer.job, attempt=timer.attempt, now=self._clock()
            )
            return list(job.decide(state.job(timer.job), command))

        await self._execute(wf_id, decision, what="dispatch timeout")


def _summary(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return "; ".join(parts)


def _default_dispatcher(nc: NATS, near: NearTimers) -> DispatchPort:
    from events.dispatch import Dispatcher  # type: ignore[import-not-found, unused-ignore]

    dispatcher: DispatchPort = Dispatcher(nc, near=near)
    return dispatcher
