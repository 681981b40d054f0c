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
