"""What the engines' partition leases were over time, and which engine appends fell outside them.

``LeaseWatch`` follows KV ``jw_partitions`` from before the first engine starts and records every
change of a lease (``engine.p.<n>``: taken, renewed, released) and of a presence (``engine.e.<id>``)
with the server's timestamp and the test's monotonic clock at the moment it saw it. From that
record, ``outside_lease`` finds every event an engine appended to a partition at a time the KV did
not name it as that partition's owner: what fencing must prevent. An engine's events are known by
their ``Nats-Msg-Id``, ``<engine id without "engine-">.<decision>.<stage>.<index>:<n>``
(``actors/engine/engine.py``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from events import subjects
from events.direct_get import StoredMessage

_LEASE = "engine.p."
_PRESENCE = "engine.e."


@dataclass(frozen=True)
class LeaseChange:
    partition: int
    owner: str | None  # None: the key was deleted (the partition given up)
    revision: int
    at: datetime  # the server's timestamp of the KV write
    seen: float  # the test's monotonic clock when the watch delivered it


@dataclass
class LeaseWatch:
    kv: KeyValue
    changes: list[LeaseChange] = field(default_factory=list)
    owners: dict[int, str] = field(default_factory=dict)
    presence: dict[str, float] = field(default_factory=dict)  # engine id -> first seen
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, nc: NATS) -> LeaseWatch:
        watch = cls(await nc.jetstream().key_value(subjects.KV_PARTITIONS))
        watcher = await watch.kv.watch("engine.>")
        watch._task = asyncio.create_task(watch._follow(watcher))
        await watch._ready.wait()
        return watch

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # the initial values are in
                    self._ready.set()
                else:
                    self._record(entry)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _record(self, entry: KeyValue.Entry) -> None:
        if entry.key.startswith(_PRESENCE):
            self.presence.setdefault(entry.key.removeprefix(_PRESENCE), time.monotonic())
            return
        if not entry.key.startswith(_LEASE):
            return
        deleted = entry.operation in ("DEL", "PURGE") or not entry.value
        owner = None if deleted else orjson.loads(entry.value or b"{}").get("owner")
        assert isinstance(entry.created, datetime) and entry.revision is not None
        partition = int(entry.key.removeprefix(_LEASE))
        change = LeaseChange(partition, owner, entry.revision, entry.created, time.monotonic())
        self.changes.append(change)
        if owner is None:
            self.owners.pop(partition, None)
        else:
            self.owners[partition] = owner

    # --- queries ---------------------------------------------------------------------------------

    def held_by(self, engine: str) -> set[int]:
        return {p for p, owner in self.owners.items() if owner == engine}

    def share(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for owner in self.owners.values():
            counts[owner] = counts.get(owner, 0) + 1
        return counts

    def taken_from(self, engine: str, partitions: Iterable[int], *, by: str) -> list[LeaseChange]:
        """For each partition, the first change after ``engine`` held it that names ``by``."""
        taken = []
        for partition in partitions:
            held = False
            for change in self.changes:
                if change.partition != partition:
                    continue
                if change.owner == engine:
                    held = True
                elif held and change.owner == by:
                    taken.append(change)
                    break
        return taken

    def before(self, change: LeaseChange) -> LeaseChange | None:
        """The change of the same partition just before ``change``."""
        history = [c for c in self.changes if c.partition == change.partition]
        index = history.index(change)
        return history[index - 1] if index else None

    def lease_waits(self, taken: list[LeaseChange]) -> list[float]:
        """For each takeover, the seconds (server time) since the previous owner last wrote the
        lease: a takeover before its lease ran out would show a wait below ``lease_ttl``."""
        waits = []
        for change in taken:
            previous = self.before(change)
            assert previous is not None
            waits.append((change.at - previous.at).total_seconds())
        return sorted(waits)

    def owner_at(self, partition: int, when: datetime) -> str | None:
        """The owner the KV named for ``partition`` at server time ``when``."""
        history = [c for c in self.changes if c.partition == partition]
        index = bisect.bisect_right([c.at for c in history], when)
        return history[index - 1].owner if index else None


def writer_of(message: StoredMessage, engines: Iterable[str]) -> str | None:
    """The engine whose decision appended ``message`` (None: a worker, a client …)."""
    msg_id = message.headers.get("Nats-Msg-Id", "")
    for engine in engines:
        if msg_id.startswith(engine.removeprefix("engine-") + "."):
            return engine
    return None


def outside_lease(
    messages: Iterable[StoredMessage], watch: LeaseWatch, engines: Iterable[str]
) -> list[str]:
    """Every engine append that landed while the KV named another owner (or none) for its
    partition, described with its sequence, subject, writer and the owner of the time."""
    engines = list(engines)
    found = []
    for message in messages:
        writer = writer_of(message, engines)
        if writer is None:
            continue
        partition = int(message.subject.split(".")[1])
        owner = watch.owner_at(partition, message.time)
        if owner != writer:
            found.append(
                f"#{message.seq} {message.subject} by {writer} at {message.time.isoformat()}: "
                f"partition {partition} was {owner or 'free'}'s"
            )
    return found
