"""Paused workers and handlers: switches an operator sets in KV ``jw_control``, workers follow.

``jetwork workers pause ID`` writes ``pause.worker.<id>``; ``--handler NAME`` writes
``pause.handler.<name>`` (every worker with that handler). A worker follows the ``pause.>`` keys
from its start: while a switch covers it (all its label sets for its own id, the handler's label
sets for a handler) it sends no pull request there and releases what arrives; running jobs finish
and report. ``resume`` deletes the key. The bucket keeps each key's history (who paused, when,
why) and outlives every process, so a worker started while its handler is paused starts paused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final

import structlog
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict

from events import namespaces, subjects
from sdk.worker.control_keys import ControlKeys

_log = structlog.get_logger("jetwork.worker")
PREFIX: Final = "pause."


def worker_key(worker_id: str) -> str:
    return f"{PREFIX}worker.{worker_id}"


def handler_key(handler: str, namespace: str | None = None) -> str:
    """A handler's switch, in its namespace (``pause.ns.<namespace>.handler.<name>`` outside the
    default one: pausing a handler pauses it there only)."""
    return f"{PREFIX}{namespaces.key_prefix(namespace)}handler.{handler}"


class PauseRecord(BaseModel):
    """The value of a pause key: who paused it, when and why."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    by: str = ""
    reason: str = ""
    at: datetime

    @classmethod
    def now(cls, *, by: str, reason: str) -> PauseRecord:
        return cls(by=by, reason=reason, at=datetime.now(UTC))


class Pauses:
    """The switches that cover one worker, followed from KV (``start``) or set by hand."""

    def __init__(
        self,
        worker_id: str,
        on_change: Callable[[], None] = lambda: None,
        *,
        handlers: Callable[[], Iterable[str]] = tuple,
        namespace: str | None = None,
    ) -> None:
        self._worker_id = worker_id
        self._namespace = namespace
        self._on_change = on_change
        self._handlers = handlers
        self._keys: set[str] = set()
        self._switches = ControlKeys(
            PREFIX, lambda key, value: self.record(key, value is not None), what="pause switches"
        )

    def applies_to(self, handler: str | None) -> bool:
        """Is a label set of ``handler`` (None: label-routed jobs) paused on this worker?"""
        if worker_key(self._worker_id) in self._keys:
            return True
        return handler is not None and handler_key(handler, self._namespace) in self._keys

    @property
    def paused(self) -> tuple[str, ...]:
        """What is paused, for presence: ``worker`` and/or ``@<handler>`` for each of this
        worker's handlers that is paused (a pause of a handler it lacks is not shown here)."""
        names = ["worker"] if worker_key(self._worker_id) in self._keys else []
        names += [
            f"@{name}"
            for name in sorted(self._handlers())
            if handler_key(name, self._namespace) in self._keys
        ]
        return tuple(names)

    def record(self, key: str, present: bool) -> None:
        before = set(self._keys)
        if present:
            self._keys.add(key)
        else:
            self._keys.discard(key)
        if self._keys != before:
            _log.info("paused" if present else "resumed", switch=key)
            self._on_change()

    async def start(self, js: JetStreamContext) -> None:
        """Read the switches set now, then follow them."""
        await self._switches.start(js)

    async def watch_again(self, js: JetStreamContext) -> None:
        """Follow the switches afresh after a reconnection (``control_keys.py``)."""
        await self._switches.watch_again(js)

    async def stop(self) -> None:
        await self._switches.stop()


async def set_pause(js: JetStreamContext, key: str, record: PauseRecord | None) -> None:
    """Write (``record``) or delete (None) a pause switch."""
    kv = await js.key_value(subjects.KV_CONTROL)
    if record is None:
        await kv.delete(key)
    else:
        await kv.put(key, record.model_dump_json().encode())
