"""Worker presence in KV ``jw_workers``: who is alive, what it offers, what it runs.

The entry (key: the worker id) is written at start and refreshed with every heartbeat tick; the
bucket expires entries that were not refreshed for 60 s, so a crashed worker disappears by itself.
A clean exit deletes its entry at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from events import subjects

_log = structlog.get_logger("jetwork.worker")


class RunningJob(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str
    job: str
    attempt: int
    epoch: int


class WorkerPresence(BaseModel):
    """The value of a ``jw_workers`` entry."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    worker_id: str
    labels: tuple[str, ...]
    handlers: tuple[str, ...]
    concurrency: int
    started_at: datetime
    last_seen: datetime
    running: tuple[RunningJob, ...] = ()
    host: str = ""
    pid: int = 0
    paused: tuple[str, ...] = ()  # "worker" and/or "@<handler>" (sdk/worker/pausing.py)
    # Each handler's input/output models as JSON Schema (sdk/worker/handler_schemas.py).
    handler_schemas: dict[str, dict[str, Any]] = Field(default_factory=dict)
    namespace: str = "default"  # whose jobs it claims (events/namespaces.py)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def decode(cls, data: bytes) -> WorkerPresence:
        return cls.model_validate_json(data)


class PresenceBoard:
    """Writes one worker's presence entry; failures are logged, never fatal."""

    def __init__(self, js: JetStreamContext, *, worker_id: str) -> None:
        self._js = js
        self._worker_id = worker_id
        self._kv: KeyValue | None = None

    async def put(
        self,
        *,
        labels: Iterable[str],
        handlers: Iterable[str],
        concurrency: int,
        started_at: datetime,
        running: Iterable[RunningJob],
        paused: Iterable[str] = (),
        schemas: Mapping[str, dict[str, Any]] | None = None,
        namespace: str = "default",
    ) -> None:
        """Write (or refresh) the entry, stamped with ``last_seen`` = now."""
        presence = WorkerPresence(
            worker_id=self._worker_id,
            labels=tuple(sorted(labels)),
            handlers=tuple(handlers),
            concurrency=concurrency,
            started_at=started_at,
            last_seen=datetime.now(UTC),
            running=tuple(running),
            host=socket.gethostname(),
            pid=os.getpid(),
            paused=tuple(paused),
            handler_schemas=dict(schemas or {}),
            namespace=namespace,
        )
        try:
            kv = await self._bucket()
            await kv.put(self._worker_id, presence.encode())
        except Exception as exc:  # best effort: a missed refresh is repaired by the next one
            _log.warning("cannot announce worker", worker_id=self._worker_id, error=repr(exc))

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            kv = await self._bucket()
            await kv.delete(self._worker_id)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.KV_WORKERS)
        return self._kv
