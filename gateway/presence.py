"""HTTP workers in ``jetwork workers``: their ``jw_workers`` entries, written by the gateway.

An HTTP worker has no NATS connection, so the gateway that serves its calls writes its entry:
at registration, and every ``REFRESH`` seconds while it calls (claims, heartbeats, results).
What it runs is what it claimed here and has not ended, until its lease would lapse. This is a
cache of what the calls showed, not a source of truth: behind a load balancer each gateway
writes what it saw, and the bucket's TTL removes a worker that stopped calling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from events import subjects
from sdk.worker.presence import RunningJob, WorkerPresence

REFRESH: Final = 10.0
FORGET_AFTER: Final = 60.0
_log = structlog.get_logger("jetwork.gateway")


@dataclass
class _Seen:
    labels: tuple[str, ...]
    handlers: tuple[str, ...]
    address: str
    started_at: datetime
    last_call: float = field(default_factory=time.monotonic)
    written: float = 0.0
    running: dict[tuple[str, str], tuple[RunningJob, float]] = field(default_factory=dict)
    namespace: str = "default"  # the one its calls named (``Jetwork-Namespace``)


class HttpPresence:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self._seen: dict[str, _Seen] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._refresh(), name="jw-gw-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def register(
        self,
        worker_id: str,
        *,
        labels: tuple[str, ...],
        handlers: tuple[str, ...],
        address: str,
        namespace: str | None = None,
    ) -> None:
        seen = _Seen(labels, handlers, address, datetime.now(UTC))
        seen.namespace = namespace or "default"
        self._seen[worker_id] = seen
        await self._write(worker_id)

    def called(
        self,
        worker_id: str,
        *,
        labels: tuple[str, ...] | None = None,
        handlers: tuple[str, ...] = (),
        address: str = "",
        namespace: str | None = None,
    ) -> None:
        """The worker called; a worker that never registered here is known from now on."""
        seen = self._seen.get(worker_id)
        if seen is None:
            seen = self._seen[worker_id] = _Seen(labels or (), handlers, address, datetime.now(UTC))
        elif labels is not None:
            seen.labels, seen.handlers = labels, handlers
        if namespace is not None:
            seen.namespace = namespace
        seen.last_call = time.monotonic()

    def running(self, worker_id: str, job: RunningJob, *, ttl: float) -> None:
        self.called(worker_id)
        expires = time.monotonic() + ttl
        self._seen[worker_id].running[(job.workflow_id, job.job)] = (job, expires)

    def ended(self, worker_id: str, workflow_id: str, job: str) -> None:
        seen = self._seen.get(worker_id)
        if seen is not None:
            seen.running.pop((workflow_id, job), None)
            seen.last_call = time.monotonic()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH / 2)
            moment = time.monotonic()
            for worker_id, seen in list(self._seen.items()):
                if moment - seen.last_call > FORGET_AFTER:
                    del self._seen[worker_id]  # the bucket's TTL removes its entry
                elif moment - seen.written >= REFRESH and seen.written < seen.last_call:
                    await self._write(worker_id)

    async def _write(self, worker_id: str) -> None:
        seen = self._seen.get(worker_id)
        if seen is None:
            return
        moment = time.monotonic()
        seen.running = {k: v for k, v in seen.running.items() if v[1] > moment}
        presence = WorkerPresence(
            worker_id=worker_id,
            labels=tuple(sorted(seen.labels)),
            handlers=seen.handlers,
            concurrency=max(1, len(seen.running)),
            started_at=seen.started_at,
            last_seen=datetime.now(UTC),
            running=tuple(job for job, _ in seen.running.values()),
            host=f"http {seen.address}".strip(),
            pid=0,
            namespace=seen.namespace,
        )
        seen.written = moment
        try:
            if self._kv is None:
                self._kv = await self._js.key_value(subjects.KV_WORKERS)
            await self._kv.put(worker_id, presence.encode())
        except Exception as exc:  # best effort: the next refresh repairs it
            _log.warning("cannot announce HTTP worker", worker_id=worker_id, error=repr(exc))
