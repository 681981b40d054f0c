"""Per-attempt log collection: numbered chunks, published in batches, in bounded memory.

A ``LogBuffer`` numbers each line it accepts (``seq`` 1, 2, 3 … per job attempt, with no gaps),
cuts lines longer than ``max_line_bytes``, and hands batches to an async ``flush`` callback every
``interval`` seconds or as soon as a batch is full. When the publisher falls behind and the
unpublished backlog reaches its bound, new lines are dropped and counted; the next line that fits
is preceded by one ``system`` chunk saying how many were dropped. Logs are best effort: a batch
whose ``flush`` raises is lost (counted in ``stats.lost``), never retried, never fatal to the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Protocol

import structlog

LogStream = Literal["stdout", "stderr", "log", "system"]
"""``stdout``/``stderr`` of a shell job, ``log`` for ``ctx.log`` lines, ``system`` for notes
written by jetwork itself (dropped lines, ignored output commands, tracebacks are ``stderr``)."""

FlushCallback = Callable[[Sequence["LogChunk"]], Awaitable[None]]

KIB: Final = 1024
TRUNCATION_MARKER: Final = " … [truncated {n} bytes]"

_log = structlog.get_logger(__name__)


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


class NullLogWriter:
    """Discards every line; for contexts that have nowhere to send logs."""

    def write(self, stream: LogStream, line: str, *, dropped_bytes: int = 0) -> LogChunk | None:
        return None


@dataclass(slots=True)
class LogStats:
    accepted: int = 0
    """Lines numbered and queued (drop notices included)."""
    dropped: int = 0
    """Lines refused because the backlog was full, or written after ``close()``."""
    truncated: int = 0
    """Lines cut to ``max_line_bytes``."""
    published: int = 0
    """Lines handed to ``flush`` successfully."""
    lost: int = 0
    """Lines in batches whose ``flush`` raised."""
    batches: int = 0


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
    """Collects the log lines of one job attempt and publishes them in batches.

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
        max_pending_bytes: int = 4 * KIB * KIB,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        if min(max_line_bytes, batch_max_lines, batch_max_bytes, max_pending_lines) < 1:
            raise ValueError("log buffer bounds must be >= 1")
        self._flush = flush
        self._interval = interval
        self._max_line_bytes = max_line_bytes
        self._batch_max_lines = batch_max_lines
        self._batch_max_bytes = batch_max_bytes
        self._max_pending_lines = max_pending_lines
        self._max_pending_bytes = max_pending_bytes
        self._clock = clock
        self._pending: deque[tuple[LogChunk, int]] = deque()
        self._pending_bytes = 0
        self._next_seq = 1
        self._dropped_since_notice = 0
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
        """Lines accepted and not yet handed to ``flush``."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, stream: LogStream, line: str, *, dropped_bytes: int = 0) -> LogChunk | None:
        """Number and queue ``line``; ``None`` when it was dropped (backlog full or closed)."""
        if self._closed:
            self.stats.dropped += 1
            return None
        line, truncated = truncate_line(line, self._max_line_bytes, dropped_bytes=dropped_bytes)
        size = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
        if (
            len(self._pending) >= self._max_pending_lines
            or self._pending_bytes + size > self._max_pending_bytes
        ):
            self.stats.dropped += 1
            self._dropped_since_notice += 1
            return None
        if truncated:
            self.stats.truncated += 1
        self._emit_drop_notice()
        chunk = self._append(stream, line, size)
        self._ensure_flusher()
        return chunk

    async def flush(self) -> None:
        """Publish everything accepted so far, now."""
        await self._drain()

    async def close(self) -> None:
        """Stop accepting lines, publish the rest (and a final drop notice), stop the flusher."""
        if self._closed:
            return
        self._emit_drop_notice()
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            # Wake the flusher rather than cancel it: a cancel could lose the batch in flight.
            self._has_data.set()
            self._batch_full.set()
            await task
        await self._drain()

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

    def _emit_drop_notice(self) -> None:
        if not self._dropped_since_notice:
            return
        n, self._dropped_since_notice = self._dropped_since_notice, 0
        line = f"[jetwork] {n} log line(s) dropped: the job wrote faster than logs were published"
        self._append("system", line, len(line))

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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_full.wait(), self._interval)
            await self._drain()

    async def _drain(self) -> None:
        async with self._drain_lock:
            while self._pending:
                batch = self._take_batch()
                try:
                    await self._flush(batch)
                except Exception as exc:
                    self.stats.lost += len(batch)
                    _log.warning("log batch lost", lines=len(batch), error=repr(exc))
                else:
                    self.stats.published += len(batch)
                    self.stats.batches += 1
            self._has_data.clear()
            self._batch_full.clear()

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
