"""Following the keys of KV ``jw_control`` under one prefix: the switches operators set (pauses,
``pausing.py``; rate limits, ``rate_limits.py``) that every worker and gateway obeys from its
start. What is set when following begins is read first; every change after it is applied as it
comes; a failure of the watch is logged and the watch goes on (a missed change would leave a
worker paused, or limited, wrongly)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from nats.js import JetStreamContext

from events import subjects

_log = structlog.get_logger("jetwork.worker")

OnKey = Callable[[str, bytes | None], None]
"""Called with a key and its value, or None once it is deleted (or purged)."""


class ControlKeys:
    def __init__(self, prefix: str, on_key: OnKey, *, what: str) -> None:
        self._prefix, self._on_key, self._what = prefix, on_key, what
        self._task: asyncio.Task[None] | None = None

    async def start(self, js: JetStreamContext) -> None:
        """Read the keys set now, then follow them."""
        kv = await js.key_value(subjects.KV_CONTROL)
        watcher: Any = await kv.watch(f"{self._prefix}>")
        try:
            while (entry := await watcher.updates(timeout=5.0)) is not None:
                self._apply(entry)
        except BaseException:  # the caller may start again (a node down): leave no watch behind
            with contextlib.suppress(Exception):
                await watcher.stop()
            raise
        self._task = asyncio.get_running_loop().create_task(self._follow(watcher))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self, watcher: Any) -> None:
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=None)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception(f"following {self._what} failed, retrying")
                    await asyncio.sleep(1.0)
                    continue
                if entry is not None:
                    self._apply(entry)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    def _apply(self, entry: Any) -> None:
        present = entry.operation is None and bool(entry.value)
        self._on_key(entry.key, entry.value if present else None)
