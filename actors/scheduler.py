"""The ticker: starts a run for each tick of each schedule (``jetwork schedules``).

Every ``jetwork server`` runs one; they share the durable consumer ``scheduler`` on
``cmd.sched.>`` (JW_COMMANDS is a work queue: each fired tick goes to one of them). An
``ArmTick`` (a schedule added or resumed) arms the schedule's next tick. For a tick
it reads the schedule (gone, re-added or paused: the tick is dropped), decides with
``actors.schedules.plan_tick`` (catch-up and overlap policies), starts the run, arms the next
tick, records what it did in the entry, and only then acknowledges the tick. The run's id is
derived from the schedule's name and the tick's instant (idempotency key
``schedule:<name>:<tick>``), so a tick handled twice (redelivered after a ticker died, or by two
tickers) starts one run: the second start lands on the same workflow and is de-duplicated by the
start path (msg id, then CAS 0 on the workflow actor). Sub-workflows a schedule's definition
names (``workflow: NAME``) are looked up at each tick, as a start by hand would: a tick runs the
latest version registered then; a name no longer registered skips the tick, with the reason in
the entry's note.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from actors import workflow
from actors.definitions.mapping import definition_mapping
from actors.definitions.named import resolve_names
from actors.schedules import TickPlan, plan_tick
from actors.workflow import WorkflowState
from events import subjects
from events.definition import WorkflowDefinition
from events.definition_store import DefinitionStore
from events.errors import InvalidWorkflow
from events.pull import PullFeed
from events.requests import StartRequest, request_msg_id, workflow_id_for
from events.schedule_store import ArmTick, ScheduleEntry, ScheduleStore, TickDue
from events.store import EventStore
from events.tasks import cancel_and_wait
from events.topology import TOPOLOGY_PATIENCE, patiently

_log = structlog.get_logger("jetwork.scheduler")
CONSUMER: Final = "scheduler"
_ARM: Final = subjects.schedule_arm("")
ACK_WAIT: Final = 10.0
STOP_TIMEOUT: Final = 10.0
"""Seconds ``stop`` waits for the ticker to end."""


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of the run of ``name``'s tick at ``tick``."""
    stamp = tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{tick.microsecond // 1000:03d}Z"
    return f"schedule:{name}:{stamp}"


def run_id(name: str, tick: datetime, namespace: str | None = None) -> str:
    return workflow_id_for(tick_key(name, tick), namespace=namespace)


class Ticker:
    def __init__(
        self,
        nc: NATS,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ack_wait: float = ACK_WAIT,
    ) -> None:
        self._nc = nc
        self._ack_wait = ack_wait
        self._js = nc.jetstream()
        self._store = ScheduleStore(self._js)
        self._events = EventStore(nc)
        self._clock = clock
        self._feed: PullFeed | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = ConsumerConfig(
            name=CONSUMER,
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_deliver=-1,
            filter_subject=subjects.SCHEDULE_TICKS,
        )

        async def create() -> None:
            await self._js.add_consumer(subjects.COMMANDS_STREAM, config)

        # Retried while JetStream does not answer (a server restarted while a node is down).
        deadline = time.monotonic() + TOPOLOGY_PATIENCE
        await patiently(create, deadline, what="creating the schedule ticks' consumer")
        self._feed = PullFeed(self._nc, stream=subjects.COMMANDS_STREAM, consumer=CONSUMER,
                              window=16, expires=5.0)  # fmt: skip
        await self._feed.start()
        self._task = asyncio.create_task(self._loop(), name="jetwork-ticker")

    async def stop(self) -> None:
        # Cancelled again until it ends: one cancellation can be swallowed by nats-py's requests
        # on Python 3.11 (events/tasks.py); a single cancel left stop() waiting for ever.
        await cancel_and_wait(self._task, timeout=STOP_TIMEOUT, what="schedule ticker")
        self._task = None
        if self._feed is not None:
            await self._feed.stop()
            self._feed = None

    async def _loop(self) -> None:
        assert self._feed is not None
        while True:
            for msg in await self._feed.next_batch(16, timeout=1.0):
                try:
                    await self.handle(msg)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a store outage: the tick comes back after ack_wait
                    _log.warning("tick not handled", subject=msg.subject, error=repr(exc))

    async def handle(self, msg: Msg) -> None:
        try:
            if msg.subject.startswith(_ARM):
                await self.arm(ArmTick.model_validate_json(msg.data))
            else:
                await self.tick(TickDue.model_validate_json(msg.data))
        except ValidationError as exc:
            _log.warning("malformed schedule command dropped", subject=msg.subject, error=str(exc))
        await msg.ack()

    async def arm(self, request: ArmTick) -> None:
        """Arm the schedule's next tick, if it is still the one asked for and not paused."""
        found = await self._store.get(request.name)
        if found is None:
            return
        entry = found[0]
        if entry.generation == request.generation and not entry.paused and entry.next_tick:
            # A tick already past (no ticker ran meanwhile) fires at once: catch-up decides.
            await self._store.arm(entry, entry.next_tick)

    async def tick(self, tick: TickDue) -> TickPlan | None:
        """Handle one fired tick; the plan carried out (None: the tick was dropped)."""
        found = await self._store.get(tick.name)
        if found is None:
            return None
        entry = found[0]
        if entry.generation != tick.generation or entry.paused:
            return None
        if entry.next_tick is not None and tick.due < entry.next_tick:
            # Handled already (a redelivery after the next tick was armed), or an arm request
            # raced the tick and armed the tick before: the entry's next tick is the one to
            # wait for. Arming it again is harmless (it replaces the same one), so it is.
            await self._store.arm(entry, entry.next_tick)
            return None
        running = entry.last_run is not None and await self._running(entry.last_run)
        plan = plan_tick(
            entry.definition.schedule, due=tick.due, now=self._clock(), previous_running=running
        )
        refused = None
        if plan.run is not None:
            refused = await self._start(entry, plan.run)
        await self._store.arm(entry, plan.next)
        await self._store.change(entry.name, lambda current: _after(current, tick, plan, refused))
        _log.info("tick", schedule=entry.name, due=str(tick.due), ran=str(plan.run),
                  next=str(plan.next), missed=plan.missed, overlapped=plan.overlapped)  # fmt: skip
        return plan

    async def _start(self, entry: ScheduleEntry, tick: datetime) -> str | None:
        """Start the tick's run; why it could not start (a sub-workflow's name), or None."""
        key = tick_key(entry.name, tick)
        store = DefinitionStore(self._js)

        async def fetch(name: str, version: int | None) -> WorkflowDefinition:
            return (await store.get(name, version)).definition

        try:
            definition = await resolve_names(entry.definition, fetch)
        except InvalidWorkflow as error:
            _log.warning("tick not run", schedule=entry.name, error=str(error))
            return "; ".join(error.problems)
        request = StartRequest(
            workflow_id=workflow_id_for(key, namespace=entry.namespace),
            definition=definition_mapping(definition),
            inputs=entry.inputs,
            idempotency_key=key,
            namespace=entry.namespace,  # the namespace it was added in (None: the default)
        )
        await self._js.publish(
            request.subject(),
            request.model_dump_json().encode(),
            headers={"Nats-Msg-Id": request_msg_id(request)},
        )
        return None

    async def _running(self, workflow_id: str) -> bool:
        """Whether the schedule's previous run has not ended (or its start still waits)."""
        loaded = await self._events.read_tolerant(subjects.workflow_events(workflow_id))
        state = workflow.replay(loaded.events, WorkflowState(workflow_id=workflow_id))
        if state.status is not None:
            return not state.status.is_terminal
        try:
            await self._js.get_last_msg(
                subjects.COMMANDS_STREAM, subjects.command("start", workflow_id)
            )
        except NotFoundError:
            return False  # never started (refused): nothing to overlap
        return True


def _after(
    entry: ScheduleEntry, tick: TickDue, plan: TickPlan, refused: str | None = None
) -> ScheduleEntry | None:
    if entry.generation != tick.generation:
        return None  # re-added meanwhile: its own tick is armed
    note = None
    if refused is not None:
        note = f"tick not run: {refused}"
        plan = TickPlan(run=None, next=plan.next, missed=plan.missed, overlapped=False)
    elif plan.overlapped:
        note = f"tick skipped: the previous run {entry.last_run} was still running"
    elif plan.missed:
        note = "ticks missed while no ticker ran" + (
            f"; caught up with {plan.run:%Y-%m-%d %H:%M:%S}Z" if plan.run else " (catch_up: skip)"
        )
    return entry.model_copy(
        update={
            "next_tick": plan.next,
            "last_tick": plan.run or entry.last_tick,
            "last_run": run_id(entry.name, plan.run, entry.namespace)
            if plan.run
            else entry.last_run,
            "skipped": entry.skipped + (1 if plan.run is None or plan.missed else 0),
            "note": note,
        }
    )
