"""Deleting ended workflows: ``jetwork delete`` and the server's retention (``--retention``).

The one path that removes events from ``JW_EVENTS`` (docs/reliability.md, "Deleting
workflows"). For one workflow, in this order:

1. fold its history and decide (``actors.deletion``): only an ended workflow may go;
2. append the ``WorkflowDeleted`` tombstone to the workflow actor, conditional on the sequence
   the decision read (a retry that reopened it meanwhile makes this conflict: decide again);
3. purge every event of the workflow *before* the tombstone (``evt.<p>.<wf>.>``, up to the
   tombstone's sequence): the tombstone stays, the audit of the deletion;
4. purge its logs (``log.<wf>.>``).

The projector removes the view, summary and index entry when it folds the tombstone. Each step
is idempotent: a deletion cut short (a crash, a lost connection) is finished by deleting again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS

from actors import deletion, workflow
from actors.definitions import format_duration
from actors.workflow_state import WorkflowState
from events import subjects
from events.base import Event
from events.catalog import WorkflowDeleted
from events.errors import CommandRefused, ConcurrencyConflict, StoreError, WorkflowNotFound
from events.store import ActorRef, EventStore
from projections.reader import Views
from projections.search import ListFilter

__all__ = ["Deleted", "Retention", "delete_workflow"]

_log = structlog.get_logger("jetwork.retention")
_ATTEMPTS = 5
_SWEEP_BATCH = 200
_TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Deleted:
    """A deleted workflow: its tombstone's stream sequence and what it records."""

    workflow_id: str
    name: str
    status: str
    tombstone_seq: int
    by: str
    at: datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def delete_workflow(
    nc: NATS,
    store: EventStore,
    workflow_id: str,
    *,
    by: str,
    reason: str | None = None,
    clock: Callable[[], datetime] = _utc_now,
    timeout: float = 5.0,
) -> Deleted:
    """Delete the ended workflow ``workflow_id`` (see the module's docstring).

    Raises ``WorkflowNotFound`` for an unknown one and ``CommandRefused`` for one not ended. A
    workflow deleted already is deleted again (finishing what a crash may have cut short).
    """
    await _require_purgeable(nc, timeout=timeout)
    for _ in range(_ATTEMPTS):
        loaded = await store.read_tolerant(subjects.workflow_events(workflow_id))
        state = workflow.replay(loaded.events, WorkflowState(workflow_id=workflow_id))
        if state.deleted:
            tombstone = loaded.events[-1] if loaded.events else None
            found = _finished(tombstone.event if tombstone else None, state.last_seq)
            if found is not None:
                await _purge(nc, workflow_id, state.last_seq, timeout=timeout)
                return found
        event = deletion.decide(state, by=by, reason=reason, at=clock())
        try:
            seq = await store.append(
                ActorRef.workflow(workflow_id),
                [event],
                expected_seq=state.last_seq,
                command_id=f"delete-{workflow_id}-{state.last_seq}",
            )
        except ConcurrencyConflict:
            continue  # reopened or deleted meanwhile: decide again on what is there now
        await _purge(nc, workflow_id, seq, timeout=timeout)
        _log.info("workflow deleted", workflow=workflow_id, by=by, reason=reason)
        return Deleted(workflow_id, event.name, event.status, seq, by, event.at)
    raise StoreError(f"deleting {workflow_id} kept conflicting with other writers", retryable=True)


def _finished(event: Event | None, seq: int) -> Deleted | None:
    if not isinstance(event, WorkflowDeleted):
        return None
    return Deleted(event.workflow_id, event.name, event.status, seq, event.by, event.at)


async def _require_purgeable(nc: NATS, *, timeout: float) -> None:
    """Refuse before the tombstone when the events stream cannot purge (made by a jetwork
    from before deletion: nats-server never lifts ``deny_purge`` from a stream)."""
    try:
        msg = await nc.request(
            f"$JS.API.STREAM.INFO.{subjects.EVENTS_STREAM}", b"", timeout=timeout
        )
    except Exception as exc:
        raise StoreError(f"reading the events stream's settings failed: {exc!r}") from None
    config = orjson.loads(msg.data).get("config", {})
    if config.get("deny_purge"):
        raise StoreError(
            f"cannot delete workflows: the events stream {subjects.EVENTS_STREAM} was created "
            "denying purge (by a jetwork from before deletion), and nats-server never lifts "
            'that; nothing was changed. See docs/reliability.md, "Deleting workflows".'
        )


async def _purge(nc: NATS, workflow_id: str, tombstone_seq: int, *, timeout: float) -> None:
    # ``seq``: purge up to, not including, the tombstone; whatever follows it stays.
    await _call_purge(
        nc,
        subjects.EVENTS_STREAM,
        {"filter": subjects.workflow_events(workflow_id), "seq": tombstone_seq},
        timeout=timeout,
    )
    await _call_purge(nc, subjects.LOGS_STREAM, {"filter": f"log.{workflow_id}.>"}, timeout=timeout)


async def _call_purge(nc: NATS, stream: str, request: dict[str, Any], *, timeout: float) -> None:
    what = f"purging {request['filter']} from {stream}"
    try:
        msg = await nc.request(
            f"$JS.API.STREAM.PURGE.{stream}", orjson.dumps(request), timeout=timeout
        )
    except Exception as exc:
        raise StoreError(f"{what} failed: {exc!r}", retryable=True) from None
    reply = orjson.loads(msg.data)
    if "error" in reply:
        error = reply["error"]
        raise StoreError(f"{what} failed: {error.get('description', error)}")


class Retention:
    """Deletes ended workflows older than ``retention`` (by their end), every ``interval``.

    Runs in ``jetwork server``; any number may run at once (a deletion is idempotent and
    conditional on the workflow's history). Finds them in the projections (which may lag: a
    workflow is deleted one sweep later at worst).
    """

    def __init__(
        self,
        nc: NATS,
        *,
        retention: timedelta,
        interval: float | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._nc = nc
        self._retention = retention
        seconds = retention.total_seconds()
        self._interval = interval if interval is not None else min(max(seconds / 10, 1), 3600)
        self._clock = clock
        self._store = EventStore(nc)
        self._views = Views(nc)
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0

    async def sweep(self) -> list[str]:
        """Delete what has expired now; the ids deleted."""
        now = self._clock()
        where = ListFilter(until=now - self._retention, ended_before=now - self._retention)
        done: list[str] = []
        for status in _TERMINAL:
            while True:
                rows = await self._views.list(
                    status=status, limit=_SWEEP_BATCH, where=where, every_namespace=True
                )
                fresh = [row.workflow_id for row in rows if row.workflow_id not in done]
                for wf in fresh:
                    with contextlib.suppress(WorkflowNotFound, CommandRefused):  # gone, reopened
                        await delete_workflow(
                            self._nc,
                            self._store,
                            wf,
                            by="retention",
                            reason=f"ended more than {_shown(self._retention)} ago",
                            clock=self._clock,
                        )
                    done.append(wf)
                # Rows still listed were deleted but not yet removed by the projector: the
                # next sweep sees the rest.
                if len(rows) < _SWEEP_BATCH or not fresh:
                    break
        self.deleted += len(done)
        return done

    async def start(self) -> None:
        """Sweep every ``interval`` from now on; refuses an events stream that cannot purge."""
        await _require_purgeable(self._nc, timeout=5.0)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._views.close()
        await self._store.close()

    async def _run(self) -> None:
        while True:
            try:
                deleted = await self.sweep()
                if deleted:
                    _log.info("retention deleted workflows", count=len(deleted))
            except Exception as exc:  # the next sweep tries again
                _log.warning("retention sweep failed, will retry", error=repr(exc))
            await asyncio.sleep(self._interval)


def _shown(retention: timedelta) -> str:
    return format_duration(retention.total_seconds())
