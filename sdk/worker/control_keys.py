"""Following the keys of KV ``jw_control`` under one prefix: the switches operators set (pauses,
``pausing.py``; rate limits, ``rate_limits.py``) that every worker and gateway obeys from its
start; the gateway follows KV ``jw_labelsets`` the same way. What is set when following begins
is read first; every change after it is applied as it comes; a failure of the watch is logged
and the watch goes on (a missed change would leave a worker paused, or limited, wrongly).

After a reconnection the owner calls ``watch_again``: nats-py's KV watch is an ordered consumer
kept in the server's memory, so it is gone after a server restart, and nats-py makes it again
only once it has missed two heartbeats (10 to 20 s; not at all if the stream's sequences went
back, a store restored from a backup). The fresh watch's values replace what was known: a key
followed before that it lacks is applied as deleted, so a pause lifted meanwhile does not hold.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from nats.js import JetStreamContext

from events import subjects
from events.tasks import cancel_and_wait

_log = structlog.get_logger("jetwork.worker")
READ_TIMEOUT: Final = 5.0
"""Seconds each initial value of a fresh watch may take to arrive."""
STOP_TIMEOUT: Final = 2.0
"""Seconds a follower may take to end once cancelled (``events.tasks.cancel_and_wait``)."""

OnKey = Callable[[str, bytes | None], None]
"""Called with a key and its value, or None once it is deleted (or purged)."""


class ControlKeys:
    """Follows the keys of ``bucket`` under ``prefix`` ("": every key)."""

    def __init__(
        self, prefix: str, on_key: OnKey, *, what: str, bucket: str = subjects.KV_CONTROL
    ) -> None:
        self._prefix, self._on_key, self._what, self._bucket = prefix, on_key, what, bucket
        self._present: set[str] = set()
        self._watcher: Any = None
        """The watch followed now; a follower whose watch is no longer it ends."""
        self._task: asyncio.Task[None] | None = None
        self._active = False
        self._afresh = asyncio.Lock()

    async def start(self, js: JetStreamContext) -> None:
        """Read the keys set now, then follow them."""
        self._active = True
        await self._follow_afresh(js)

    async def watch_again(self, js: JetStreamContext) -> None:
        """Watch afresh (after a reconnection), as ``start`` did; a key followed before that is
        not in the bucket now is applied as deleted. On failure the current watch goes on."""
        if self._active:
            await self._follow_afresh(js)

    async def stop(self) -> None:
        self._active = False
        task, self._task, self._watcher = self._task, None, None
        await cancel_and_wait(task, timeout=STOP_TIMEOUT, what=f"following {self._what}")

    async def _follow_afresh(self, js: JetStreamContext) -> None:
        async with self._afresh:  # two reconnections in a row: one fresh watch after the other
            kv = await js.key_value(self._bucket)
            watcher: Any = await kv.watch(f"{self._prefix}>")
            try:
                entries = await _initial_entries(watcher)
            except BaseException:  # the caller may start again (a node down): leave no watch
                await _stop_quietly(watcher)
                raise
            if not self._active:  # stopped meanwhile
                await _stop_quietly(watcher)
                return
            self._replace(entries)
            old, self._watcher = self._task, watcher
            self._task = asyncio.get_running_loop().create_task(self._follow(watcher))
            await cancel_and_wait(old, timeout=STOP_TIMEOUT, what=f"following {self._what}")

    def _replace(self, entries: list[Any]) -> None:
        """What a fresh watch read first is all there is: a key without an entry is deleted
        (its delete marker may be gone: purged, or a store restored from a backup)."""
        for key in sorted(self._present - {entry.key for entry in entries}):
            self._present.discard(key)
            self._on_key(key, None)
        for entry in entries:
            self._apply(entry)

    async def _follow(self, watcher: Any) -> None:
        try:
            while watcher is self._watcher:
                try:
                    entry = await watcher.updates(timeout=None)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    _log.exception(f"following {self._what} failed, retrying")
                    await asyncio.sleep(1.0)
                    continue
                # Not a marker (end of values, stop), nor news from a watch replaced meanwhile.
                if getattr(entry, "key", None) is not None and watcher is self._watcher:
                    self._apply(entry)
        finally:
            await _stop_quietly(watcher)

    def _apply(self, entry: Any) -> None:
        present = entry.operation is None and bool(entry.value)
        if present:
            self._present.add(entry.key)
        else:
            self._present.discard(entry.key)
        self._on_key(entry.key, entry.value if present else None)


async def watched_again(what: str, again: Callable[[], Awaitable[None]], *, log: Any) -> None:
    """Watch afresh with ``again`` after a reconnection, saying so if it fails: the current
    watch goes on, and the next reconnection tries again."""
    try:
        await again()
    except Exception as exc:
        log.warning(f"cannot watch {what} again", error=repr(exc))


async def _initial_entries(watcher: Any) -> list[Any]:
    """The entries a fresh watch delivers before its end-of-values marker."""
    entries = []
    while (entry := await watcher.updates(timeout=READ_TIMEOUT)) is not None:
        entries.append(entry)
    return entries


async def _stop_quietly(watcher: Any) -> None:
    with contextlib.suppress(Exception):
        await watcher.stop()
