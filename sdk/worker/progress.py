"""An attempt's progress frames (``ctx.progress(frame)``) and their rolling summary.

Each frame (a JSON object) is merged into the attempt's summary at once (JSON merge patch, RFC
7386: ``null`` removes a key, nested objects merge), so a frame that cannot be stored raises at
the call; then one message per frame is published, in order, on ``log.<wf>.<job>.progress``
(JW_LOGS): ``{"workflow_id", "job", "attempt", "epoch", "worker_id", "seq", "ts", "frame",
"summary"}``. The newest message holds the summary: one direct get reads it (``jetwork status``).
A parked attempt run again (``InProgress``) carries on from the summary it left. Progress is
advisory, like logs: a publish that fails is logged and skipped; the job goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
import structlog
from nats.js import JetStreamContext

from events import subjects
from events.direct_get import DirectReader
from events.merge_patch import merge_patch

CLOSE_TIMEOUT: Final = 5.0
"""Seconds the end of an attempt waits for its last frames to be published."""

_log = structlog.get_logger("jetwork.worker")


class ProgressStream:
    """The progress of one attempt; ``append`` may be called from any thread."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        workflow_id: str,
        job: str,
        attempt: int,
        epoch: int,
        worker_id: str,
        limit: int,
        summary: dict[str, Any] | None = None,
        seq: int = 0,
        claimed: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._js = js
        self._claimed = claimed
        """A claim not appended yet: appended before the first frame (as ``logs.ClaimedFirst``)."""
        self._subject = subjects.progress(workflow_id, job)
        self._head = {"workflow_id": workflow_id, "job": job, "attempt": attempt,
                      "epoch": epoch, "worker_id": worker_id}  # fmt: skip
        self._limit = limit
        self.summary: dict[str, Any] = summary or {}
        self.seq = seq
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        # Started by the first frame: most jobs publish none. A task per attempt, cancelled at
        # its close, left a cycle for the collector (its CancelledError's traceback holds the
        # frame that holds this stream, which held the task): ~60 objects of garbage per job.
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def append(self, frame: Mapping[str, Any]) -> None:
        """Merge ``frame`` into the summary and queue it; raises ``TypeError``/``ValueError``
        for a frame that is not a JSON object or would make a message over the limit."""
        if not isinstance(frame, Mapping):
            raise TypeError(f"a progress frame is a dict, got {type(frame).__name__}")
        with self._lock:
            summary = merge_patch(self.summary, dict(frame))
            seq = self.seq + 1
            try:
                body = orjson.dumps({**self._head, "seq": seq, "ts": time.time(),
                                     "frame": frame, "summary": summary})  # fmt: skip
            except TypeError as exc:
                raise TypeError(f"a progress frame must be JSON: {exc}") from None
            if len(body) > self._limit:
                raise ValueError(
                    f"progress frame {seq} with its summary is {len(body)} bytes, over the "
                    f"limit of {self._limit}: keep progress small (counts, stages, references)"
                )
            self.summary, self.seq = summary, seq
        if _running_loop() is self._loop:
            self._enqueue((seq, body))
        else:
            with contextlib.suppress(RuntimeError):  # the attempt is over: nowhere to go
                self._loop.call_soon_threadsafe(self._enqueue, (seq, body))

    def _enqueue(self, item: tuple[int, bytes]) -> None:
        if self._closed:
            return  # (as before: a frame after the close was never published)
        self._queue.put_nowait(item)
        if self._task is None:
            self._task = self._loop.create_task(self._publish_all(), name="jw-progress")

    async def close(self) -> None:
        """Publish what is queued (up to ``CLOSE_TIMEOUT``), then stop."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._queue.join()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _publish_all(self) -> None:
        while True:
            seq, body = await self._queue.get()
            if self._claimed is not None and not await self._claimed():
                self._queue.task_done()
                continue  # the run does not count: its frames are not published
            msg_id = f"{self._subject}.{self._head['attempt']}.{self._head['epoch']}.{seq}"
            try:
                await self._js.publish(self._subject, body, headers={"Nats-Msg-Id": msg_id})
            except Exception as exc:  # advisory, as logs: never fail the job for it
                _log.warning("progress frame not published", subject=self._subject, seq=seq,
                             error=repr(exc))  # fmt: skip
            finally:
                self._queue.task_done()


async def progress_stream(
    js: JetStreamContext,
    reader: DirectReader | None,
    *,
    workflow_id: str,
    job: str,
    attempt: int,
    epoch: int,
    worker_id: str,
    limit: int,
    poll_count: int,
    claimed: Callable[[], Awaitable[bool]] | None = None,
) -> ProgressStream:
    """The stream of an attempt; one run again after ``InProgress`` (``poll_count`` > 0) starts
    from the summary and sequence its earlier runs left (``reader``: JW_LOGS)."""
    summary: dict[str, Any] | None = None
    seq = 0
    if poll_count and reader is not None:
        with contextlib.suppress(Exception):  # unreadable: start afresh, as a new attempt does
            last = await reader.last(subjects.progress(workflow_id, job))
            if last is not None:
                previous = orjson.loads(last.data)
                if previous.get("attempt") == attempt:
                    summary, seq = dict(previous["summary"]), int(previous["seq"])
    return ProgressStream(js, workflow_id=workflow_id, job=job, attempt=attempt, epoch=epoch,
                          worker_id=worker_id, limit=limit, summary=summary, seq=seq,
                          claimed=claimed)  # fmt: skip


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
