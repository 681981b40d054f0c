"""The engine's side of namespace quotas (``events/quotas.py``): admitting a start within its
namespace's ``max_running_workflows``, and giving the place back when the workflow ends.

A start of a workflow that does not exist yet, in a namespace with a workflow quota, takes a
place among the holders of KV ``jw_quotas`` ``workflows.<namespace>`` by compare-and-set on the
key's revision before it is decided: two engines (owning different partitions) racing for the
last place cannot both win. A full quota either keeps the start waiting (``wait``: its command
is released with a delay and comes back, in ``JW_COMMANDS``, until a place frees) or refuses it
(``refuse``: answered and dead-lettered with a clear message). The place is given back when the
engine appends the workflow's end.

Nothing is lost when an engine dies between the steps: a holder whose workflow has ended (or
never started ``STALE_AFTER`` after its admission: a start whose append never landed) is found
from the log when the quota is full, and dropped. Quotas are read from ``jw_control`` at most
every ``ttl`` seconds per namespace: a quota set or changed applies within that.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from events import subjects
from events.catalog import WorkflowCancelled, WorkflowDeleted, WorkflowFailed, WorkflowSucceeded
from events.quotas import (
    OverQuota,
    QuotaRecord,
    WorkflowHolder,
    admit,
    decode_holders,
    encode_holders,
    quota_key,
    refusal,
    workflows_key,
)
from events.store import ActorRef, EventStore

_log = structlog.get_logger("jetwork.engine")
RECHECK: Final = 1.0
"""Seconds a start over a ``wait`` quota is held back before it is tried again."""
STALE_AFTER: Final = 10.0
_TRIES: Final = 16
_ENDED: Final = (WorkflowSucceeded, WorkflowFailed, WorkflowCancelled, WorkflowDeleted)


@dataclass(frozen=True, slots=True)
class Held:
    """A start over its namespace's quota: wait (released for ``RECHECK``) or refused."""

    wait: bool
    reason: str


class Quotas:
    """Namespaces' workflow quotas, for one engine."""

    def __init__(
        self,
        nc: NATS,
        store: EventStore,
        *,
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._nc, self._store = nc, store
        self._ttl, self._clock, self._wall = ttl, clock, wall
        self._config: dict[str, tuple[float, QuotaRecord | None]] = {}
        self._control: KeyValue | None = None
        self._holders: KeyValue | None = None

    async def quota(self, namespace: str) -> QuotaRecord | None:
        """The namespace's quota as ``jw_control`` had it at most ``ttl`` seconds ago."""
        now = self._clock()
        cached = self._config.get(namespace)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        record = await self._read(namespace)
        self._config[namespace] = (now, record)
        return record

    async def enter(self, namespace: str, workflow_id: str) -> Held | None:
        """None: the workflow may start (it holds a place, or its namespace has no workflow
        quota); else why it waits or is refused."""
        record = await self.quota(namespace)
        if record is None or record.max_running_workflows is None:
            return None
        limit = record.max_running_workflows
        kv = await self._bucket()
        key = workflows_key(namespace)
        for _ in range(_TRIES):
            holders, revision = await _holders(kv, key)
            admitted = admit(holders, workflow_id, limit, self._wall())
            if admitted is None:
                holders = await self._without_ended(holders)
                admitted = admit(holders, workflow_id, limit, self._wall())
            if admitted is None:
                return Held(
                    wait=record.over_quota is OverQuota.WAIT,
                    reason=refusal(namespace, workflow_id, limit),
                )
            if admitted is holders or await _write(kv, key, admitted, revision):
                return None
        # Lost every race: held back like a full quota (tried again shortly), never refused.
        return Held(wait=True, reason="the quota's key kept changing")

    async def leave(self, namespace: str, workflow_id: str) -> None:
        """Give the workflow's place back (nothing when it holds none). Best effort: a place
        left behind is found and dropped by the next start the quota would hold back."""
        record = await self.quota(namespace)
        if record is None or record.max_running_workflows is None:
            return
        kv = await self._bucket()
        key = workflows_key(namespace)
        for _ in range(_TRIES):
            holders, revision = await _holders(kv, key)
            kept = [h for h in holders if h.workflow_id != workflow_id]
            if len(kept) == len(holders) or await _write(kv, key, kept, revision):
                return
        _log.warning("could not give a quota place back", namespace=namespace, workflow=workflow_id)

    async def _read(self, namespace: str) -> QuotaRecord | None:
        if self._control is None:
            self._control = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
        try:
            entry = await self._control.get(quota_key(namespace))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            return QuotaRecord.model_validate_json(entry.value)
        except ValidationError:
            _log.warning("ignoring a malformed quota", namespace=namespace)
            return None

    async def _bucket(self) -> KeyValue:
        if self._holders is None:
            self._holders = await self._nc.jetstream().key_value(subjects.KV_QUOTAS)
        return self._holders

    async def _without_ended(self, holders: list[WorkflowHolder]) -> list[WorkflowHolder]:
        now = self._wall()
        kept = []
        for holder in holders:
            last = await self._store.last_event(ActorRef.workflow(holder.workflow_id))
            if last is None:
                ended = now - holder.since >= STALE_AFTER  # admitted, its start never landed
            else:
                ended = isinstance(last.event, _ENDED)
            if ended:
                _log.info("quota place of an ended workflow dropped", workflow=holder.workflow_id)
            else:
                kept.append(holder)
        return kept


async def _holders(kv: KeyValue, key: str) -> tuple[list[WorkflowHolder], int]:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return [], 0
    return decode_holders(entry.value), entry.revision or 0


async def _write(kv: KeyValue, key: str, holders: list[WorkflowHolder], revision: int) -> bool:
    with contextlib.suppress(KeyWrongLastSequenceError):
        if revision:
            await kv.update(key, encode_holders(holders), last=revision)
        else:
            await kv.create(key, encode_holders(holders))
        return True
    return False
