"""The label sets in use (KV ``jw_labelsets``), followed live: which consumers a claim pulls.

A cache of KV, nothing more: every gateway follows the bucket from its start, as workers do,
so a label set the engine registers while a claim long-polls is seen by the next claim. The
bucket is watched afresh after a reconnection (``watch_again``; ``sdk/worker/control_keys.py``).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from nats.js import JetStreamContext

from events import subjects
from events.dispatch import InvalidDispatch, LabelSet, serves
from sdk.worker.control_keys import ControlKeys

_log = structlog.get_logger("jetwork.gateway")


class LabelSets:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._known: dict[str, LabelSet] = {}
        self._changed = asyncio.Event()
        self._keys = ControlKeys(
            "", self._on_value, what="label sets", bucket=subjects.KV_LABELSETS
        )

    async def start(self) -> None:
        await self._keys.start(self._js)

    async def watch_again(self) -> None:
        """After a reconnection: the label sets registered meanwhile are seen (the cache
        keeps every one it had)."""
        await self._keys.watch_again(self._js)

    async def stop(self) -> None:
        await self._keys.stop()

    def serving(self, capabilities: frozenset[str]) -> list[LabelSet]:
        """The label sets whose jobs a worker with ``capabilities`` may run."""
        return [
            ls for ls in self._known.values() if serves(capabilities, frozenset(ls.requirements))
        ]

    async def wait_changed(self, timeout: float) -> None:
        """Return when a label set was added, or after ``timeout`` seconds."""
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    def add(self, labelset: LabelSet) -> None:
        # By consumer: a label set's priority levels are consumers of their own.
        if labelset.consumer not in self._known:
            self._known[labelset.consumer] = labelset
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def _on_value(self, key: str, value: bytes | None) -> None:
        if value is None:
            return  # deleted: consumers stay until operators remove them
        try:
            self.add(LabelSet.decode(value))
        except InvalidDispatch as exc:
            _log.warning("ignoring label set entry", key=key, error=str(exc))
