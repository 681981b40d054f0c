"""The label sets in use (KV ``jw_labelsets``), followed live: which consumers a claim pulls.

A cache of KV, nothing more: every gateway follows the bucket from its start, as workers do,
so a label set the engine registers while a claim long-polls is seen by the next claim.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from nats.js import JetStreamContext

from events import subjects
from events.dispatch import InvalidDispatch, LabelSet, serves

_log = structlog.get_logger("jetwork.gateway")


class LabelSets:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._known: dict[str, LabelSet] = {}
        self._changed = asyncio.Event()
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, initial_timeout: float = 5.0) -> None:
        kv = await self._js.key_value(subjects.KV_LABELSETS)
        self._watcher = await kv.watchall()
        while (entry := await self._watcher.updates(timeout=initial_timeout)) is not None:
            self._on_entry(entry)
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="jw-gw-labelsets")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()

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

    def _on_entry(self, entry: Any) -> None:
        if entry.value is None or entry.operation is not None:
            return  # a delete marker: consumers stay until operators remove them
        try:
            self.add(LabelSet.decode(entry.value))
        except InvalidDispatch as exc:
            _log.warning("ignoring label set entry", key=entry.key, error=str(exc))

    async def _follow(self) -> None:
        while True:
            try:
                entry = await self._watcher.updates(timeout=None)
                if entry is not None:
                    self._on_entry(entry)
            except asyncio.CancelledError:
                raise
            except Exception:  # never stop following: a missed label set strands its jobs
                _log.exception("following label sets failed, retrying")
                await asyncio.sleep(1.0)
