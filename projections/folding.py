"""Folding workflow histories for the projector: from the log, or from a batch in hand.

The log is the reference: ``from_log`` reads what the workflow appended after the state's
stream sequence (one direct get) and folds it. Reading costs the server a scan of the stream's
tail, though, so for a workflow whose state the projector holds (its feed hands over every event
of the partition once, in order: ``events.ordered_feed``), ``from_messages`` folds the batch's
own messages instead.

Messages that are not events, and events the fold refuses, are skipped and logged (once per
stream sequence), never fatal.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

import structlog
from nats.aio.client import Client as NATS

from actors._state import updated
from actors.workflow import WorkflowState, replay
from events import subjects
from events.base import RecordedEvent
from events.codec import decode
from events.dead_letters import report_undecodable_event
from events.errors import UndecodableEvent
from events.ordered_feed import Delivered
from events.store import EventStore

_log = structlog.get_logger("jetwork.projector")
_GARBAGE_MEMORY = 10_000


class Folder:
    def __init__(self, events: EventStore, nc: NATS | None = None) -> None:
        self._events = events
        self._nc = nc
        self._garbage_seen: OrderedDict[int, None] = OrderedDict()
        self._reports: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        await self._events.close()

    async def from_log(self, state: WorkflowState) -> WorkflowState:
        """``state`` brought up to the end of the log."""
        loaded = await self._events.read_tolerant(
            subjects.workflow_events(state.workflow_id), from_seq=state.stream_seq + 1
        )
        for message, exc in loaded.skipped:
            self._garbage(message.seq, str(exc), message.subject, message.data)
        if loaded.events:
            state = self._fold(state, loaded.events)
        return _past(state, loaded.last_seq)

    def from_messages(self, state: WorkflowState, messages: Sequence[Delivered]) -> WorkflowState:
        """``state`` with the messages it does not reflect yet (all of its workflow, in order)."""
        recorded: list[RecordedEvent] = []
        last = state.stream_seq
        for msg in messages:
            seq = msg.seq
            if seq <= state.stream_seq:
                continue  # read from the log already
            last = seq
            try:
                event = decode(msg.data, subject=msg.subject, seq=seq)
            except UndecodableEvent as exc:
                self._garbage(seq, str(exc), msg.subject, msg.data)
                continue
            recorded.append(RecordedEvent(seq, msg.subject, msg.time, event))
        if recorded:
            state = self._fold(state, recorded)
        return _past(state, last)

    def _fold(self, state: WorkflowState, events: list[RecordedEvent]) -> WorkflowState:
        try:
            return replay(events, state)
        except Exception:
            pass  # one event the fold cannot take: find it, skip it, keep the others
        for recorded in events:
            try:
                state = replay([recorded], state)
            except Exception as exc:
                self._garbage(recorded.seq, f"the workflow fold refused it: {exc!r}")
        return state

    def _garbage(self, seq: int, reason: str, subject: str = "", data: bytes = b"") -> None:
        if seq in self._garbage_seen:
            return
        self._garbage_seen[seq] = None
        while len(self._garbage_seen) > _GARBAGE_MEMORY:
            self._garbage_seen.popitem(last=False)
        _log.error("skipping a message the projection cannot use", seq=seq, reason=reason)
        if self._nc is not None and subject:  # a message that is not an event: an operator's
            report = report_undecodable_event(
                self._nc, subject=subject, seq=seq, payload=data, reason=reason
            )
            task = asyncio.get_running_loop().create_task(report)
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)


def is_birth(wf: str, msg: Delivered) -> bool:
    """Whether ``msg`` is the workflow's first event: its start, appended under "no event yet".

    Only the engine's start decision appends there with expected sequence 0, and job actors
    only get events once their workflow started, so nothing of the workflow precedes it.
    """
    headers = msg.headers or {}
    return (
        msg.subject == subjects.workflow_event(wf, "WorkflowStarted")
        and headers.get("Nats-Expected-Last-Subject-Sequence") == "0"
        and headers.get("Nats-Expected-Last-Subject-Sequence-Subject")
        == subjects.workflow_actor_filter(wf)
    )


def _past(state: WorkflowState, seq: int) -> WorkflowState:
    # Skipped messages count too: the next read starts after them.
    return updated(state, stream_seq=seq) if seq > state.stream_seq else state
