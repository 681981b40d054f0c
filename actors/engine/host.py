"""The workflow host: keeps workflow states current and appends decisions under CAS.

State is a fold of the workflow's history. The host caches folded states (bounded, LRU) and
catches up by reading only what was appended after the cached stream sequence: one direct-get
request per decision when nothing changed, instead of a full replay.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import structlog
from nats.aio.client import Client as NATS

from actors import workflow
from actors._state import updated
from actors.appends import Append
from actors.workflow import WorkflowState
from events import subjects
from events.base import Event, RecordedEvent
from events.codec import decode
from events.dead_letters import record_dead_letter
from events.errors import ConcurrencyConflict, StoreError, UndecodableEvent
from events.store import ActorRef, EventStore, StoredMessage

_log = structlog.get_logger("jetwork.engine")
# Workflows with at most this many jobs are read by their actors' chains (no stream scan); a
# bigger one has many subjects per read, where reading forward costs less.
_CHAINS_UP_TO = 16
# RecordedEvent.time of an event folded from our own append (replay does not read it).
_NO_TIME: Final = datetime.fromtimestamp(0, UTC)

Decision = Callable[[WorkflowState], Sequence[Event]]


class DecisionFailed(StoreError):
    """A decision kept conflicting with other writers; the triggering message will be retried."""

    retryable = True


@dataclass(frozen=True)
class Appended:
    events: list[Event] = field(default_factory=list)
    decision_id: str = ""
    last_seq: int = 0  # the highest stream sequence appended
    # The decision's state with the appended events folded in (None: read it back), see
    # ``WorkflowHost.execute``.
    state: WorkflowState | None = None


def decision_of(msg_id: str | None) -> str:
    """The decision id an engine put at the head of an event's msg id ('' if none)."""
    return msg_id.split(".", 1)[0] if msg_id else ""


class WorkflowHost:
    def __init__(
        self,
        nc: NATS,
        store: EventStore,
        *,
        cache_size: int = 20_000,
        max_conflicts: int = 20,
    ) -> None:
        self._nc = nc
        self._store = store
        self._cache: OrderedDict[str, WorkflowState] = OrderedDict()
        self._cache_size = cache_size
        self._max_conflicts = max_conflicts
        self._garbage_seen: set[int] = set()

    async def state(self, wf_id: str, *, min_seq: int = 0) -> WorkflowState:
        """The workflow's state, up to the newest event in the log.

        ``min_seq``: an event of this workflow the caller knows is in the log (what it reacts
        to, what it appended); the state is guaranteed to include it even when a lagging replica
        answers the read.
        """
        cached = self._cache.get(wf_id)
        # Unknown (a cold engine) or small: by its actors' chains; a big one reads forward.
        if cached is None or (cached.status is not None and len(cached.order) <= _CHAINS_UP_TO):
            base = cached or WorkflowState(workflow_id=wf_id)
            changed = await self._store.read_changed_actors(
                wf_id, _known_actors(base), min_seq=min_seq
            )
            if changed is not None:
                current = await self._fold(base, changed) if changed else base
                # Each actor is complete, but not necessarily every event up to the newest
                # (multi_last is not one snapshot): a forward read must still start here.
                current = updated(current, stream_seq=base.stream_seq)
                self._remember(wf_id, current)
                return current
        from_seq = cached.stream_seq + 1 if cached else 1
        messages = await self._store.read_raw(
            subjects.workflow_events(wf_id), from_seq=from_seq, min_seq=min_seq
        )
        current = cached or WorkflowState(workflow_id=wf_id)
        if messages:
            current = await self._fold(current, messages)
        self._remember(wf_id, current)
        return current

    def cached(self, wf_id: str) -> WorkflowState | None:
        """The folded state in memory, possibly behind the log (no I/O)."""
        return self._cache.get(wf_id)

    def forget(self, wf_id: str) -> None:
        self._cache.pop(wf_id, None)

    async def execute(
        self,
        wf_id: str,
        decision: Decision,
        *,
        what: str,
        state: WorkflowState | None = None,
    ) -> Appended:
        """Decide on the current state and append the result; on a conflict, reload and redo.

        Returns the events appended (none when the decision found nothing to do) and the id of
        the decision, which prefixes their msg ids (``<decision>.<n>:<i>``). ``state``: a state
        the caller has just loaded, used for the first attempt (saves a read; CAS still guards
        it, and a conflict reloads).
        """
        seen = 0  # the highest sequence a conflict told us about: the reload must include it
        for _ in range(self._max_conflicts):
            if state is None:
                state = await self.state(wf_id, min_seq=seen)
            events = list(decision(state))
            if not events:
                return Appended()
            decision_id = uuid.uuid4().hex
            try:
                landed = await self._append_all(state, events, decision_id)
            except ConcurrencyConflict as conflict:
                seen = max(seen, conflict.actual_seq or 0)
                _log.debug(
                    "conflict, deciding again", workflow=wf_id, what=what, error=str(conflict)
                )
                await asyncio.sleep(random.uniform(0, 0.01))  # de-synchronise racing engines
                state = None
                continue
            last = max(seq for _, seq in landed)
            folded = _absorb(state, landed)
            if folded is not None:
                self._remember(wf_id, folded)
            return Appended(events, decision_id, last, folded)
        raise DecisionFailed(f"{what} for workflow {wf_id} conflicted {self._max_conflicts} times")

    async def _append_all(
        self, state: WorkflowState, events: list[Event], decision_id: str
    ) -> list[tuple[Append, int]]:
        """Append each actor's group under its CAS, in the planned order.

        Runs of job-actor groups are independent of each other, so they go concurrently (a
        fan-out of 1,000 jobs is not 1,000 round trips in a row); a workflow-actor group waits
        for everything before it and everything after it waits for it, which keeps the order
        ``plan_appends`` promises (a workflow ends after the job events it follows from).
        Returns each append with the stream sequence of its last event.
        """
        workflow_filter = subjects.workflow_actor_filter(state.workflow_id)
        landed: list[tuple[Append, int]] = []
        pending: list[tuple[Append, Awaitable[int]]] = []
        for index, append in enumerate(workflow.plan_appends(state, events)):
            call = self._store.append(
                ActorRef(append.actor_filter),
                append.events,
                expected_seq=append.expected_last_seq,
                command_id=f"{decision_id}.{index}",
            )
            if append.actor_filter == workflow_filter:
                landed += await _all_or_first_error(pending)
                landed.append((append, await call))
                pending = []
            else:
                pending.append((append, call))
        return landed + await _all_or_first_error(pending)

    async def _fold(self, state: WorkflowState, messages: list[StoredMessage]) -> WorkflowState:
        recorded: list[RecordedEvent] = []
        garbage: list[StoredMessage] = []
        for message in messages:
            try:
                event = decode(message.data, subject=message.subject, seq=message.seq)
            except UndecodableEvent as exc:
                garbage.append(message)
                await self._report_garbage(message, exc)
                continue
            recorded.append(RecordedEvent(message.seq, message.subject, message.time, event))
        if recorded:
            state = workflow.replay(recorded, state)
        for message in garbage:
            state = _skip_over(state, message)
        return state

    async def _report_garbage(self, message: StoredMessage, exc: UndecodableEvent) -> None:
        if message.seq in self._garbage_seen:
            return
        self._garbage_seen.add(message.seq)
        await record_dead_letter(
            self._nc,
            source="events",
            subject=message.subject,
            seq=message.seq,
            payload=message.data,
            reason=f"{exc}; skipped when folding the workflow",
        )

    def _remember(self, wf_id: str, state: WorkflowState) -> None:
        self._cache[wf_id] = state
        self._cache.move_to_end(wf_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


async def _all_or_first_error(
    calls: list[tuple[Append, Awaitable[int]]],
) -> list[tuple[Append, int]]:
    """Await every call (none is abandoned half-way), then raise the first error, if any.

    Returns each append with the sequence its call returned.
    """
    if not calls:
        return []
    results = await asyncio.gather(*(call for _, call in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [
        (append, seq)
        for (append, _), seq in zip(calls, results, strict=True)
        if isinstance(seq, int)
    ]


def _absorb(state: WorkflowState, landed: list[tuple[Append, int]]) -> WorkflowState | None:
    """``state`` with the events just appended folded in, or None when that is not certain.

    Each append was conditional on its actor's last sequence in ``state``, so that actor's
    events up to the new sequence are exactly its state's plus ours; events of *other* actors
    appended meanwhile are not in ``state``, but actors fold independently (a job's events
    change that job only, the workflow's the workflow only), so they are missing, not
    misapplied, and the next read adds them. ``stream_seq`` stays where the last read left
    it, so that read starts there; ``replay`` skips what an actor has folded already. Saves
    reading back every append the engine reacts to. A group of several events (an atomic
    batch) is read back instead: its sequences are not returned one by one.
    """
    if any(len(append.events) != 1 for append, _ in landed):
        return None
    recorded = [
        RecordedEvent(seq, append.actor_filter, _NO_TIME, append.events[0])
        for append, seq in sorted(landed, key=lambda item: item[1])
    ]
    return updated(workflow.replay(recorded, state), stream_seq=state.stream_seq)


def _known_actors(state: WorkflowState) -> dict[str, int]:
    """Each actor's last sequence folded into ``state`` (0: none yet)."""
    wf = state.workflow_id
    known = {subjects.workflow_actor_filter(wf): state.last_seq}
    for name, job_state in state.jobs.items():
        known[subjects.job_actor_filter(wf, name)] = job_state.last_seq
    return known


def _skip_over(state: WorkflowState, message: StoredMessage) -> WorkflowState:
    """Account for a message that is not an event: its actor's next CAS must expect it."""
    tokens = message.subject.split(".")
    stream_seq = max(state.stream_seq, message.seq)
    if len(tokens) == 5 and tokens[2] == "job":
        job_state = state.job(tokens[3])
        jobs = {
            **state.jobs,
            tokens[3]: updated(job_state, last_seq=max(job_state.last_seq, message.seq)),
        }
        return updated(state, jobs=jobs, stream_seq=stream_seq)
    if len(tokens) == 4 and tokens[2] == "wf":
        return updated(state, last_seq=max(state.last_seq, message.seq), stream_seq=stream_seq)
    return updated(state, stream_seq=stream_seq)
