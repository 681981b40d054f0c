"""Per-attempt log collection: numbered lines, published in batches, never dropped.

A ``LogBuffer`` numbers each line it accepts (``seq`` 1, 2, 3 … per job attempt, with no gaps),
cuts lines longer than ``max_line_bytes`` (the line itself ends with ``… [truncated N bytes]``),
and hands batches to an async ``flush`` callback every ``interval`` seconds or as soon as a batch
is full.

**Nothing is dropped.** When the unpublished backlog reaches ``max_pending_lines`` or
``max_pending_bytes`` the buffer is ``full``: writers that can wait are told to (the shell
executor stops reading the job's pipes, so the job blocks on its next write; a sync handler's
thread blocks in ``ctx.emit``) until the backlog is back to half the bound (``when_room``). A
writer on the event loop itself (an async handler) cannot wait: its lines are accepted over the
bound and published as soon as it yields. A batch whose ``flush`` fails is retried with backoff
(0.05 s doubling to 2 s) while ``keep_trying()`` says so (the attempt holds its lease) and for at
most ``give_up_after`` seconds; only then are its lines counted as lost (``stats.lost``) and
logged by the worker.

**Per-attempt limit.** After ``max_total_bytes`` of lines an attempt's further lines are not kept:
one ``system`` line says so where it happens, and a last one at ``close()`` how many lines and
bytes were left out. Lines written after ``close()`` (a thread still running after its attempt
ended) are counted in ``stats.after_close``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Protocol

import structlog

from events.tasks import wait_event

LogStream = Literal["stdout", "stderr", "log", "system"]
"""``stdout``/``stderr`` of a shell job, ``log`` for ``ctx.log`` lines, ``system`` for notes
written by jetwork itself (a log over its limit, ignored output commands; tracebacks are
``stderr``)."""

FlushCallback = Callable[[Sequence["LogChunk"]], Awaitable[None]]

KIB: Final = 1024
MIB: Final = 1024 * KIB
TRUNCATION_MARKER: Final = " … [truncated {n} bytes]"
RETRY_FIRST: Final = 0.05
RETRY_MAX: Final = 2.0

_log = structlog.get_logger("jetwork.worker")


@dataclass(frozen=True, slots=True)
class LogChunk:
    """One log line of one job attempt. ``ts`` is Unix time in seconds."""

    seq: int
    stream: LogStream
    line: str
    ts: float


class LogWriter(Protocol):
    """Where executors write lines. Called from the event loop's thread only."""

    def write(self, stream: LogStream, line: str, *, dropped_bytes: int = 0) -> LogChunk | None:
        """Record ``line``; ``dropped_bytes`` says how much of it was already cut off upstream."""
        ...

    @property
    def full(self) -> bool:
        """The backlog is at its bound: writers that can wait should (see ``when_room``)."""
        ...

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, on the loop) when the backlog has room again."""
        ...


class NullLogWriter:
    """Discards every line; for contexts that have nowhere to send logs."""

    full = False

    def write(self, stream: LogStream, line: str, *, dropped_bytes: int = 0) -> LogChunk | None:
        return None

    def when_room(self, callback: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_soon(callback)


@dataclass(slots=True)
class LogStats:
    accepted: int = 0
    """Lines numbered and queued (jetwork's own notes included)."""
    truncated: int = 0
    """Lines cut to ``max_line_bytes``."""
    published: int = 0
    """Lines handed to ``flush`` successfully."""
    retries: int = 0
    """Failed ``flush`` calls that were retried."""
    lost: int = 0
    """Lines of batches that could not be published before giving up."""
    over_limit: int = 0
    """Lines not kept because the attempt's log was over ``max_total_bytes``."""
    over_limit_bytes: int = 0
    after_close: int = 0
    """Lines written after ``close()``."""
    batches: int = 0
    waits: int = 0
    """Times the buffer was full and writers were asked to wait."""


def truncate_line(line: str, max_bytes: int, *, dropped_bytes: int = 0) -> tuple[str, bool]:
    """``line`` cut to at most ``max_bytes`` UTF-8 bytes plus a marker, and whether it was cut."""
    if dropped_bytes == 0 and len(line) * 4 <= max_bytes:
        return line, False
    encoded = line.encode("utf-8", "replace")
    if dropped_bytes == 0 and len(encoded) <= max_bytes:
        return line, False
    kept = encoded[:max_bytes].decode("utf-8", "ignore")
    lost = len(encoded) - len(kept.encode("utf-8")) + dropped_bytes
    return kept + TRUNCATION_MARKER.format(n=lost), True


class LogBuffer:
    """Collects the log lines of one job attempt and publishes them in batches, in order.

    Use it as ``async with LogBuffer(flush) as logs: ...`` or call ``close()`` when the attempt
    ends: it publishes what is left. ``write`` never blocks and never raises.
    """

    def __init__(
        self,
        flush: FlushCallback,
        *,
        interval: float = 0.5,
        max_line_bytes: int = 16 * KIB,
        batch_max_lines: int = 1000,
        batch_max_bytes: int = 256 * KIB,
        max_pending_lines: int = 20_000,
        max_pending_bytes: int = 4 * MIB,
        max_total_bytes: int | None = None,
        keep_trying: Callable[[], bool] = lambda: True,
        give_up_after: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        bounds = (max_line_bytes, batch_max_lines, batch_max_bytes, max_pending_lines)
        if min(bounds) < 1 or max_pending_bytes < 1 or (max_total_bytes or 1) < 1:
            raise ValueError("log buffer bounds must be >= 1")
        self._flush = flush
        self._interval = interval
        self._max_line_bytes = max_line_bytes
        self._batch_max_lines = batch_max_lines
        self._batch_max_bytes = batch_max_bytes
        self._max_pending_lines = max_pending_lines
        self._max_pending_bytes = max_pending_bytes
        self._max_total_bytes = max_total_bytes
        self._keep_trying = keep_trying
        self._give_up_after = give_up_after
        self._clock = clock
        self._pending: deque[tuple[LogChunk, int]] = deque()
        self._pending_bytes = 0
        self._total_bytes = 0
        self._next_seq = 1
        self._room_waiters: list[Callable[[], None]] = []
        self._has_data = asyncio.Event()
        self._batch_full = asyncio.Event()
        self._drain_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = LogStats()

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def pending(self) -> int:
        """Lines accepted and not yet published."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def full(self) -> bool:
        return (
            len(self._pending) >= self._max_pending_lines
            or self._pending_bytes >= self._max_pending_bytes
        )

    def write(self, stream: LogStream, line: str, *, dropped_bytes: int = 0) -> LogChunk | None:
        """Number and queue ``line``; ``None`` when it is not kept (over the limit, or closed)."""
        if self._closed:
            self.stats.after_close += 1
            return None
        line, truncated = truncate_line(line, self._max_line_bytes, dropped_bytes=dropped_bytes)
        size = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
        limit = self._max_total_bytes
        if limit is not None and self._total_bytes + size > limit:
            if not self.stats.over_limit:
                note = (
                    f"[jetwork] this attempt's log reached its limit of {limit} bytes "
                    "(max_log_bytes): the lines that follow are not kept"
                )
                self._append("system", note, len(note))
            self.stats.over_limit += 1
            self.stats.over_limit_bytes += size
            return None
        if truncated:
            self.stats.truncated += 1
        self._total_bytes += size
        chunk = self._append(stream, line, size)
        self._ensure_flusher()
        return chunk

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once the backlog is down to half its bound (or closed)."""
        if not self.full or self._closed:
            asyncio.get_running_loop().call_soon(callback)
            return
        self.stats.waits += 1
        self._room_waiters.append(callback)
        self._batch_full.set()  # publish now rather than after the interval

    async def room(self) -> None:
        """Wait until the backlog has room (see ``when_room``)."""
        if not self.full or self._closed:
            return
        ready = asyncio.Event()
        self.when_room(ready.set)
        await ready.wait()

    async def flush(self) -> None:
        """Publish everything accepted so far, now."""
        await self._drain()

    async def close(self) -> None:
        """Stop accepting lines, publish the rest, stop the flusher; wake every waiting writer."""
        if self._closed:
            return
        if self.stats.over_limit:
            note = (
                f"[jetwork] {self.stats.over_limit} line(s) ({self.stats.over_limit_bytes} "
                f"bytes) not kept: this attempt's log is limited to {self._max_total_bytes} "
                "bytes (max_log_bytes)"
            )
            self._append("system", note, len(note))
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            # Wake the flusher rather than cancel it: a cancel could lose the batch in flight.
            self._has_data.set()
            self._batch_full.set()
            await asyncio.wait({task})
        await self._drain()
        self._wake_writers(force=True)
        if self.stats.lost:
            _log.error("log lines lost", lines=self.stats.lost)

    async def __aenter__(self) -> LogBuffer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- internals -----------------------------------------------------------------------------

    def _append(self, stream: LogStream, line: str, size: int) -> LogChunk:
        chunk = LogChunk(seq=self._next_seq, stream=stream, line=line, ts=self._clock())
        self._next_seq += 1
        self._pending.append((chunk, size))
        self._pending_bytes += size
        self.stats.accepted += 1
        self._has_data.set()
        if len(self._pending) >= self._batch_max_lines or self._pending_bytes >= (
            self._batch_max_bytes
        ):
            self._batch_full.set()
        return chunk

    def _ensure_flusher(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="jetwork-log-flusher"
            )

    async def _run(self) -> None:
        while not self._closed:
            await self._has_data.wait()
            if not self._batch_full.is_set() and not self._closed:
                # A line waits at most `interval` before it is published, unless a batch fills.
                await wait_event(self._batch_full, self._interval)
            await self._drain()

    async def _drain(self) -> None:
        async with self._drain_lock:
            while self._pending:
                batch = self._take_batch()
                await self._publish(batch)
                self._wake_writers()
            self._has_data.clear()
            self._batch_full.clear()

    async def _publish(self, batch: list[LogChunk]) -> None:
        delay = RETRY_FIRST
        started = time.monotonic()
        while True:
            try:
                await self._flush(batch)
            except Exception as exc:
                waited = time.monotonic() - started
                if not self._keep_trying() or waited >= self._give_up_after:
                    self.stats.lost += len(batch)
                    _log.error(
                        "log batch not published, giving up",
                        lines=len(batch),
                        first_seq=batch[0].seq,
                        tried_for=round(waited, 1),
                        error=repr(exc),
                    )
                    return
                if not self.stats.retries or delay >= RETRY_MAX:
                    _log.warning("publishing logs failed, retrying", error=repr(exc), wait=delay)
                self.stats.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.stats.published += len(batch)
            self.stats.batches += 1
            return

    def _take_batch(self) -> list[LogChunk]:
        batch: list[LogChunk] = []
        size = 0
        while self._pending and len(batch) < self._batch_max_lines:
            chunk, chunk_size = self._pending[0]
            if batch and size + chunk_size > self._batch_max_bytes:
                break
            self._pending.popleft()
            batch.append(chunk)
            size += chunk_size
        self._pending_bytes -= size
        if len(self._pending) < self._batch_max_lines and self._pending_bytes < (
            self._batch_max_bytes
        ):
            self._batch_full.clear()
        return batch

    def _wake_writers(self, *, force: bool = False) -> None:
        if not self._room_waiters:
            return
        low = (
            len(self._pending) <= self._max_pending_lines // 2
            and self._pending_bytes <= self._max_pending_bytes // 2
        )
        if not (low or force):
            return
        waiters, self._room_waiters = self._room_waiters, []
        for callback in waiters:
            callback()
