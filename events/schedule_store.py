"""Schedules in KV ``jw_schedules`` (one key per schedule), and their next tick in JW_COMMANDS.

An entry holds what a tick starts (the definition, with its ``schedule:`` rules, and the
inputs), whether it is paused, and what the ticker last did. The next tick waits as a JetStream
message schedule on ``cmdsched.sched.<name>`` (``@at`` the tick), firing ``TickDue`` onto
``cmd.sched.tick.<name>``; arming again replaces the one waiting (one schedule per subject), so
there is never more than one pending tick per schedule. Only tickers arm ticks (durable timers
are the engine role's, events/roles.py): adding or resuming a schedule sends ``ArmTick`` on
``cmd.sched.arm.<name>``, a command like a start. ``generation`` changes when a schedule is
added again: a tick armed for an older one is dropped, as is the pending tick of a deleted or
paused schedule when it fires.

Operators (add, pause, resume, delete) and the ticker (after a tick) update an entry by
compare-and-set on its revision, re-reading on a conflict, so neither loses the other's change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from events import subjects
from events.definition import WorkflowDefinition
from events.definition_store import bucket_keys
from events.errors import JetworkError
from events.schedules import schedule_time

_CAS_ATTEMPTS: Final = 50


class ScheduleNotFound(JetworkError):
    """No schedule of this name exists."""


class ScheduleEntry(BaseModel):
    """A schedule: what each tick starts (``definition`` with its ``schedule:`` rules, and
    ``inputs``), whether it is paused, and what the ticker last did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    definition: WorkflowDefinition
    inputs: dict[str, Any] = Field(default_factory=dict)
    generation: str
    added_at: datetime
    paused: bool = False
    paused_by: str | None = None
    # What the ticker did: the tick it waits for, the last tick it started a run for, that run.
    next_tick: datetime | None = None
    last_tick: datetime | None = None
    last_run: str | None = None
    # Ticks that started no run: missed while nothing could start them, or overlapping a run.
    skipped: int = 0
    note: str | None = None
    # The namespace its runs start in (the one it was added in; None: the default).
    namespace: str | None = None

    def same_content(
        self, definition: WorkflowDefinition, inputs: dict[str, Any], namespace: str | None = None
    ) -> bool:
        return (
            self.definition == definition and self.inputs == inputs and self.namespace == namespace
        )


class TickDue(BaseModel):
    """The payload of a fired tick."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    generation: str
    due: datetime


class ArmTick(BaseModel):
    """Asks a ticker to arm the schedule's ``next_tick`` (after it was added or resumed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    generation: str


class ScheduleStore:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.KV_SCHEDULES)
        return self._kv

    async def get(self, name: str) -> tuple[ScheduleEntry, int] | None:
        """The entry and its revision, or None."""
        kv = await self._bucket()
        try:
            entry = await kv.get(subjects.require_token(name, what="schedule name"))
        except NotFoundError:  # never written, or deleted
            return None
        return ScheduleEntry.model_validate_json(entry.value or b""), entry.revision or 0

    async def require(self, name: str) -> ScheduleEntry:
        found = await self.get(name)
        if found is None:
            raise ScheduleNotFound(f"no schedule named {name!r} (jetwork schedules lists them)")
        return found[0]

    async def all(self) -> list[ScheduleEntry]:
        keys = await bucket_keys(self._js, subjects.KV_SCHEDULES)
        found = [await self.get(key) for key in keys]
        return [entry for entry, _ in filter(None, found)]

    async def put_new(
        self,
        name: str,
        definition: WorkflowDefinition,
        inputs: dict[str, Any],
        *,
        now: datetime,
        first_tick: datetime,
        namespace: str | None = None,
    ) -> tuple[ScheduleEntry, bool]:
        """Add or replace the schedule ``name``; False when it holds this content already (its
        pending tick is armed again, harmlessly: the same one replaces itself)."""
        kv = await self._bucket()
        for _ in range(_CAS_ATTEMPTS):
            found = await self.get(name)
            if found is not None and found[0].same_content(definition, inputs, namespace):
                entry = found[0]
                if not entry.paused:
                    await self.request_arm(entry)  # harmless: the same tick replaces itself
                return entry, False
            entry = ScheduleEntry(
                name=name,
                definition=definition,
                inputs=inputs,
                generation=uuid.uuid4().hex[:16],
                added_at=now,
                next_tick=first_tick,
                paused=found[0].paused if found is not None else False,
                paused_by=found[0].paused_by if found is not None else None,
                namespace=namespace,
            )
            try:
                if found is None:
                    await kv.create(name, entry.model_dump_json().encode())
                else:
                    await kv.update(name, entry.model_dump_json().encode(), last=found[1])
            except KeyWrongLastSequenceError:
                continue
            if not entry.paused:
                await self.request_arm(entry)
            return entry, True
        raise JetworkError(f"schedule {name}: too many concurrent changes, try again")

    async def change(
        self, name: str, update: Callable[[ScheduleEntry], ScheduleEntry | None]
    ) -> ScheduleEntry | None:
        """Apply ``update`` to the entry by compare-and-set (None from it: leave it as is).
        Returns the entry as stored, or None when there is no such schedule."""
        kv = await self._bucket()
        for _ in range(_CAS_ATTEMPTS):
            found = await self.get(name)
            if found is None:
                return None
            entry, revision = found
            changed = update(entry)
            if changed is None:
                return entry
            try:
                await kv.update(name, changed.model_dump_json().encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return changed
        raise JetworkError(f"schedule {name}: too many concurrent changes, try again")

    async def delete(self, name: str) -> bool:
        """Remove the schedule (its pending tick is dropped when it fires); False: none."""
        if await self.get(name) is None:
            return False
        kv = await self._bucket()
        await kv.delete(name)
        return True

    async def request_arm(self, entry: ScheduleEntry) -> None:
        """Ask a ticker to arm ``entry``'s next tick (waits in JW_COMMANDS for one)."""
        request = ArmTick(name=entry.name, generation=entry.generation)
        # No message id: a resume soon after a pause must arm again, never be de-duplicated.
        await self._js.publish(
            subjects.schedule_arm(entry.name), request.model_dump_json().encode()
        )

    async def arm(self, entry: ScheduleEntry, due: datetime) -> None:
        """Make ``due`` the pending tick of ``entry`` (replacing the one waiting, if any)."""
        tick = TickDue(name=entry.name, generation=entry.generation, due=due)
        # No message id: arming again on purpose (a resume) must replace, never be de-duplicated.
        await self._js.publish(
            subjects.schedule_tick_set(entry.name),
            tick.model_dump_json().encode(),
            headers={
                "Nats-Schedule": f"@at {schedule_time(due)}",
                "Nats-Schedule-Target": subjects.schedule_tick_fire(entry.name),
            },
        )
