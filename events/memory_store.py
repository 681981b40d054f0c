"""An in-memory event log with the same contract as ``EventStore``, for fast pure tests.

It honours the same append protocol (expected sequence per actor filter, idempotent command ids,
all-or-nothing batches) so the contract suite in tests/ runs unchanged against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from events import subjects
from events.base import Event, RecordedEvent
from events.codec import decode, encode
from events.errors import ConcurrencyConflict, PayloadTooLarge
from events.store import ActorRef


def matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, ``>`` the rest."""
    want, have = filter_subject.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


class MemoryEventStore:
    def __init__(self, *, max_payload: int = 1 << 20) -> None:
        self.max_payload = max_payload
        self._log: list[tuple[str, bytes, str, datetime]] = []

    async def append(
        self, actor: ActorRef, events: Sequence[Event], *, expected_seq: int, command_id: str
    ) -> int:
        if not events:
            return expected_seq
        msg_ids = [f"{command_id}:{index}" for index in range(len(events))]
        prepared = [self._prepare(actor, event) for event in events]
        actual = self._last_seq(actor.filter)
        if actual != expected_seq:
            if actual and self._log[actual - 1][2] == msg_ids[-1]:
                return actual  # a retry of a write that already landed
            raise ConcurrencyConflict(
                actor=actor.filter, expected_seq=expected_seq, actual_seq=actual
            )
        now = datetime.now(UTC)
        for (subject, payload), msg_id in zip(prepared, msg_ids, strict=True):
            self._log.append((subject, payload, msg_id, now))
        return len(self._log)

    def _prepare(self, actor: ActorRef, event: Event) -> tuple[str, bytes]:
        subject: str = event.subject()  # type: ignore[attr-defined]
        if not actor.owns(subject):
            raise ValueError(f"event {event.event_type} on {subject} does not belong to {actor}")
        payload = encode(event)
        limit = self.max_payload - 1024
        if len(payload) > limit:
            raise PayloadTooLarge(
                what=f"{event.event_type} for {subject}", size=len(payload), limit=limit
            )
        return subject, payload

    def _last_seq(self, filter_subject: str) -> int:
        for index in range(len(self._log) - 1, -1, -1):
            if matches(filter_subject, self._log[index][0]):
                return index + 1
        return 0

    async def last_seq(self, actor: ActorRef) -> int:
        return self._last_seq(actor.filter)

    async def read(self, filter_subject: str, *, from_seq: int = 1) -> list[RecordedEvent]:
        found = []
        for seq in range(max(1, from_seq), len(self._log) + 1):
            subject, payload, msg_id, time = self._log[seq - 1]
            if matches(filter_subject, subject):
                event = decode(payload, subject=subject, seq=seq)
                found.append(
                    RecordedEvent(seq=seq, subject=subject, time=time, event=event, msg_id=msg_id)
                )
        return found

    async def load(self, actor: ActorRef, *, from_seq: int = 1) -> list[RecordedEvent]:
        return await self.read(actor.filter, from_seq=from_seq)

    async def history(self, wf_id: str, *, from_seq: int = 1) -> list[RecordedEvent]:
        return await self.read(subjects.workflow_events(wf_id), from_seq=from_seq)

    def inject_raw(self, subject: str, payload: bytes) -> int:
        """Put arbitrary bytes in the log (as a misbehaving publisher could)."""
        self._log.append((subject, payload, "", datetime.now(UTC)))
        return len(self._log)
