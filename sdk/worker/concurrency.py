"""Concurrency groups: at most ``limit`` attempts of a group run at once, across every worker.

A job's ``concurrency: {group: "deploy-${{ inputs.env }}", limit: 1}`` (GitHub Actions'
``concurrency``) is rendered into its spec. Before a claim, a worker (or the gateway, for an HTTP
worker) takes a slot of the group: KV ``jw_concurrency``, key ``<group>``, whose value lists the
holders, changed by compare-and-set, so however many workers race a group never has more than
``limit`` holders. A full group releases the dispatch (``nak``) and it is tried again after
``RECHECK``; the slot is given back once the attempt's result is recorded, the attempt is
abandoned, or its claim refused.

A holder that can no longer be running (its worker was killed, its lease ran out) is found from
the log when the group is full: a slot older than ``STALE_AFTER`` whose job's newest event is
not a running attempt's (``JobStarted``, ``JobCancelRequested``) is dropped. A job that holds a
slot already (the same workflow and job, a claim again after a lost lease) takes it over.
Waiting jobs are not served in order: whichever is offered first once a slot frees takes it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from events import namespaces, subjects
from events.catalog import JobSpec
from events.store import ActorRef, EventStore
from sdk.worker.namespace_jobs import NamespaceJobQuotas

_log = structlog.get_logger("jetwork.worker")
RECHECK: Final = 1.0
STALE_AFTER: Final = 10.0
_TRIES: Final = 16
_RUNNING: Final = frozenset({"JobStarted", "JobCancelRequested"})


class Holder(BaseModel):
    """One slot of a group: which attempt holds it, on which worker, since when (epoch s)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: str
    job: str
    attempt: int
    worker_id: str
    since: float

    def same_job(self, other: Holder) -> bool:
        return (self.workflow_id, self.job) == (other.workflow_id, other.job)

    def same_attempt(self, other: Holder) -> bool:
        return self.same_job(other) and self.attempt == other.attempt


def decode(value: bytes | None) -> list[Holder]:
    return [Holder.model_validate(item) for item in orjson.loads(value)] if value else []


def encode(holders: list[Holder]) -> bytes:
    return orjson.dumps([holder.model_dump() for holder in holders])


IsRunning = Callable[[Holder], Awaitable[bool]]


def group_key(spec: JobSpec) -> str | None:
    """The KV key of the job's group (None: it has none), in its namespace: two namespaces'
    groups of one name are two groups (``ns.<namespace>.<group>``: ``events.namespaces``)."""
    if spec.concurrency is None:
        return None
    return namespaces.key_prefix(spec.namespace) + spec.concurrency.group


class ConcurrencyGroups:
    """Takes and gives back slots of concurrency groups in KV ``jw_concurrency``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._slots: KeyValue | None = None
        self._store: EventStore | None = None
        self.quotas = NamespaceJobQuotas()

    async def start(self, js: JetStreamContext, store: EventStore) -> None:
        self._slots = await js.key_value(subjects.KV_CONCURRENCY)
        self._store = store
        await self.quotas.start(js)

    async def enter(self, spec: JobSpec, holder: Holder) -> bool:
        """True when ``holder`` has a slot of the job's group (or it has none); False: full."""
        group, key = spec.concurrency, group_key(spec)
        if group is None or key is None:
            return True
        return await self.take(key, group.limit, holder)

    async def take(self, key: str, limit: int, holder: Holder) -> bool:
        """True when ``holder`` has a slot of the group at ``key`` (at most ``limit``)."""
        assert self._slots is not None, "start() the groups first"
        for _ in range(_TRIES):
            try:
                entry = await self._slots.get(key)
                holders, revision = decode(entry.value), entry.revision or 0
            except KeyNotFoundError:
                holders, revision = [], 0
            holders = [h for h in holders if not h.same_job(holder)]
            if len(holders) >= limit:
                holders = await self._without_stale(holders)
            if len(holders) >= limit:
                return False
            if await self._write(key, [*holders, holder], revision):
                return True
        return False  # lost every race: treated as full, tried again shortly

    async def leave(self, group: str, holder: Holder) -> None:
        """Give the slot of ``holder``'s attempt back (nothing when it holds none)."""
        if self._slots is None:
            return
        for _ in range(_TRIES):
            try:
                entry = await self._slots.get(group)
            except KeyNotFoundError:
                return
            holders = decode(entry.value)
            kept = [h for h in holders if not h.same_attempt(holder)]
            if len(kept) == len(holders) or await self._write(group, kept, entry.revision or 0):
                return
        _log.warning("could not give a concurrency slot back", group=group)

    async def _write(self, group: str, holders: list[Holder], revision: int) -> bool:
        assert self._slots is not None
        with contextlib.suppress(KeyWrongLastSequenceError):
            if revision:
                await self._slots.update(group, encode(holders), last=revision)
            else:
                await self._slots.create(group, encode(holders))
            return True
        return False

    async def _without_stale(self, holders: list[Holder]) -> list[Holder]:
        now = self._clock()
        kept = []
        for holder in holders:
            if now - holder.since < STALE_AFTER or await self._running(holder):
                kept.append(holder)
            else:
                _log.info("stale concurrency slot dropped", workflow_id=holder.workflow_id,
                          job=holder.job, attempt=holder.attempt)  # fmt: skip
        return kept

    async def _running(self, holder: Holder) -> bool:
        assert self._store is not None
        last = await self._store.last_event(ActorRef.job(holder.workflow_id, holder.job))
        return last is not None and last.event.event_type in _RUNNING
