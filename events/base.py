"""Base classes for events and commands, and the envelope of a stored event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """An immutable fact, named in the past tense, tagged by ``type``, versioned by ``v``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = 1
    # Which actor kind the event belongs to: "wf" (workflow actor) or "job" (job actor).
    actor_kind: ClassVar[str] = ""

    @property
    def event_type(self) -> str:
        return type(self).__name__


class Command(BaseModel):
    """An imperative request (``StartWorkflow``); decided by an actor into events or refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = 1


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as read back from the log: the event plus where and when it was stored."""

    seq: int
    subject: str
    time: datetime
    event: Event
    msg_id: str | None = None


_new = object.__new__
_SLOTS = RecordedEvent.__dict__  # its slots' descriptors
_SET_SEQ = _SLOTS["seq"].__set__
_SET_SUBJECT = _SLOTS["subject"].__set__
_SET_TIME = _SLOTS["time"].__set__
_SET_EVENT = _SLOTS["event"].__set__
_SET_MSG_ID = _SLOTS["msg_id"].__set__


def recorded(
    seq: int, subject: str, time: datetime, event: Event, msg_id: str | None
) -> RecordedEvent:
    """``RecordedEvent(...)`` for readers of many events (a history's every event): the same
    frozen object, its slots filled directly instead of by the frozen ``__init__``'s
    ``object.__setattr__`` per field (0.34 µs instead of 0.85, ~1 ms for a 2,006-event
    history)."""
    record: RecordedEvent = _new(RecordedEvent)
    _SET_SEQ(record, seq)
    _SET_SUBJECT(record, subject)
    _SET_TIME(record, time)
    _SET_EVENT(record, event)
    _SET_MSG_ID(record, msg_id)
    return record
