"""What a running job sees of the worker: who it is, its log, and its stop signals."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from events.errors import JetworkError, LeaseLost
from sdk.worker.log_buffer import LogStream, LogWriter, NullLogWriter

THREAD_SYNC_EVERY: Final = 256
"""A thread writing log lines waits for the event loop to take them every this many lines."""


class CancellationRequested(JetworkError):
    """The job was asked to stop (``ctx.raise_if_cancelled()``); it ends as cancelled."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"job cancelled: {reason}")
        self.reason = reason


class JobLogger:
    """Writes ``LEVEL message key=value …`` lines to the job's log (stream ``log``).

    Safe to call from a sync handler running in a worker thread.
    """

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx

    def debug(self, message: str, **fields: Any) -> None:
        self._write("DEBUG", message, fields)

    def info(self, message: str, **fields: Any) -> None:
        self._write("INFO", message, fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._write("WARNING", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        self._write("ERROR", message, fields)

    def exception(self, message: str, **fields: Any) -> None:
        """An ``ERROR`` line followed by the traceback of the exception being handled."""
        self._write("ERROR", message, fields)
        for line in traceback.format_exc().rstrip("\n").splitlines():
            self._ctx.emit("log", line)

    def _write(self, level: str, message: str, fields: Mapping[str, Any]) -> None:
        extra = "".join(f" {key}={value!r}" for key, value in fields.items())
        lines = f"{message}{extra}".splitlines() or [""]
        self._ctx.emit("log", f"{level} {lines[0]}")
        for line in lines[1:]:
            self._ctx.emit("log", line)


class ProgressSink(Protocol):
    def append(self, frame: Mapping[str, Any]) -> None: ...


@dataclass(eq=False, kw_only=True)
class JobContext:
    """Handed to every executor and Python handler for one attempt of one job.

    ``cancelled`` is set when the job was cancelled, ``lease_lost`` when this worker no longer
    holds the job (its result would not count). Long-running handlers call
    ``raise_if_cancelled()`` between steps; async handlers are also cancelled outright.
    """

    workflow_id: str
    job: str
    attempt: int = 1
    epoch: int = 0
    worker_id: str = ""
    upstream_outputs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Outputs of the jobs this one needs: ``{job: {key: value}}``."""
    log_sink: LogWriter = field(default_factory=NullLogWriter)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    """Outputs set by a Python handler with ``set_output``; merged over those of its result."""
    poll_count: int = 0
    """Times this attempt was parked by an ``InProgress`` so far (0 on its first run)."""
    progress_outputs: Mapping[str, str] = field(default_factory=dict)
    """The outputs of the last ``InProgress`` (empty on the first run)."""
    progress_sink: ProgressSink | None = None
    """Where ``progress`` frames go (``sdk.worker.progress``; None: nowhere)."""
    ended_at: float | None = field(init=False, default=None)
    """When (``time.monotonic()``) the executor saw the job's own work end: its process exited,
    its handler returned. The worker's watchdog checks that the attempt moves on after it."""
    _loop: asyncio.AbstractEventLoop | None = field(init=False, default=None, repr=False)
    _stop_listeners: list[Callable[[], None]] = field(init=False, default_factory=list, repr=False)
    _thread_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    _unsynced: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @property
    def log(self) -> JobLogger:
        """The job's logger (``ctx.log.info(...)``). Made on each use, not kept: a logger kept
        here would refer back to the context, a cycle only the collector frees, per job."""
        return JobLogger(self)

    def emit(self, stream: LogStream, line: str, *, dropped_bytes: int = 0) -> None:
        """Send one line to the job's log sink, from the event loop or from any thread.

        From another thread (a sync handler) this blocks while the log's backlog is full, so a
        handler that writes faster than logs are published is slowed down, never dropped.
        """
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            # A closed loop means the attempt is over: the line has nowhere to go.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._write, stream, line, dropped_bytes)
                with self._thread_lock:
                    self._unsynced += 1
                    sync = self._unsynced >= THREAD_SYNC_EVERY
                if sync or self.log_sink.full:
                    self._wait_for_room(loop)
            return
        self._write(stream, line, dropped_bytes)

    def mark_ended(self) -> None:
        """The job's own work ended (called by executors; the first call counts)."""
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    def progress(self, frame: Mapping[str, Any]) -> None:
        """Append a progress frame (a JSON object) to this attempt's progress stream; it is
        merged into the attempt's summary (JSON merge patch: ``None`` removes a key), which
        ``jetwork status`` shows. Raises ``TypeError``/``ValueError`` for a frame that cannot be
        stored. ``jetwork logs --progress ID JOB`` and ``Client.progress`` tail the frames."""
        if self.progress_sink is not None:
            self.progress_sink.append(frame)

    def set_output(self, key: str, value: str) -> None:
        """Publish ``key=value`` to downstream jobs (Python handlers)."""
        if not isinstance(value, str):
            raise TypeError(f"output {key!r} must be a string, got {type(value).__name__}")
        self.outputs[key] = value

    def request_cancel(self, reason: str = "cancelled by user") -> None:
        """Mark the job cancelled; the executor stops it and reports ``cancelled``."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancelled.set()
        self._stopping()

    def mark_lease_lost(self) -> None:
        """The worker lost the lease: the executor stops the job and nothing is reported."""
        self.lease_lost.set()
        self._stopping()

    def on_stop(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` (on the event loop) when the job is cancelled or its lease lost;
        returns what forgets it. The executors wait on this instead of a task per event."""
        self._stop_listeners.append(listener)
        return functools.partial(_forget, self._stop_listeners, listener)

    def _stopping(self) -> None:
        for listener in list(self._stop_listeners):
            listener()

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled.is_set() or self.lease_lost.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``LeaseLost`` or ``CancellationRequested`` if the job must stop now."""
        if self.lease_lost.is_set():
            raise LeaseLost(f"worker {self.worker_id or '?'} lost the lease of job {self.job!r}")
        if self.cancelled.is_set():
            raise CancellationRequested(self.cancel_reason or "cancelled")

    def _write(self, stream: LogStream, line: str, dropped_bytes: int) -> None:
        self.log_sink.write(stream, line, dropped_bytes=dropped_bytes)

    def _wait_for_room(self, loop: asyncio.AbstractEventLoop) -> None:
        # Scheduled after this thread's lines (call_soon is first-in first-out): the sink has
        # them all when it decides whether there is room.
        with self._thread_lock:
            self._unsynced = 0
        room = threading.Event()
        loop.call_soon_threadsafe(self.log_sink.when_room, room.set)
        while not room.wait(0.5):
            if loop.is_closed() or self.lease_lost.is_set():
                return


def _forget(listeners: list[Callable[[], None]], listener: Callable[[], None]) -> None:
    with contextlib.suppress(ValueError):
        listeners.remove(listener)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
