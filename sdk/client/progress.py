"""Reading a job's progress frames (``ctx.progress``) from ``log.<wf>.<job>.progress`` on JW_LOGS.

Each message is one frame and the attempt's rolling summary after it (``sdk.worker.progress``).
``frames`` reads them in order and, with ``follow``, waits for more until the job has ended (the
same wake-ups as the log, ``sdk.client.logs``); ``summaries`` reads the newest of each job with
one direct get per job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.direct_get import DirectReader, StoredMessage
from events.store import EventStore
from sdk.client.logs import LogReader
from sdk.client.reads import ClientReads
from sdk.client.translate import require_id, translated
from sdk.errors import JobNotFound

_log = structlog.get_logger("jetwork.client")
_FOLLOW_SAFETY_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class ProgressFrame:
    """One frame a job attempt reported with ``ctx.progress``, and the attempt's summary after
    it (every frame so far merged, JSON merge patch)."""

    workflow_id: str
    job: str
    attempt: int
    epoch: int
    seq: int
    time: datetime
    frame: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    worker_id: str = ""


def decode_frame(workflow_id: str, job: str, message: StoredMessage) -> ProgressFrame | None:
    """The frame of one message; a malformed one is skipped (and logged)."""
    try:
        raw: Any = orjson.loads(message.data)
        return ProgressFrame(
            workflow_id=workflow_id,
            job=job,
            attempt=int(raw["attempt"]),
            epoch=int(raw.get("epoch", 0)),
            seq=int(raw["seq"]),
            time=datetime.fromtimestamp(float(raw.get("ts", 0.0)), UTC),
            frame=dict(raw["frame"]),
            summary=dict(raw["summary"]),
            worker_id=str(raw.get("worker_id", "")),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        _log.warning("skipping malformed progress frame", subject=message.subject,
                     seq=message.seq, error=repr(exc))  # fmt: skip
        return None


class ProgressReader:
    """Reads one job's progress frames; ``frames(follow=True)`` until the job has ended."""

    def __init__(self, nc: NATS, events: EventStore, workflow_id: str, job: str) -> None:
        self._nc = nc
        self._reader = DirectReader(nc, stream=subjects.LOGS_STREAM, timeout=5.0)
        self._ends = LogReader(nc, events, workflow_id, job)  # knows when the job has ended
        self._workflow_id = workflow_id
        self._job = job
        self._subject = subjects.progress(workflow_id, job)
        self._next_seq = 1
        self._seen: set[tuple[int, int, int]] = set()  # (attempt, epoch, seq): read once

    async def read_new(self) -> list[ProgressFrame]:
        messages = await self._reader.read_raw(self._subject, from_seq=self._next_seq)
        if messages:
            self._next_seq = messages[-1].seq + 1
        frames = []
        for message in messages:
            frame = decode_frame(self._workflow_id, self._job, message)
            if (
                frame is not None
                and (key := (frame.attempt, frame.epoch, frame.seq)) not in self._seen
            ):
                self._seen.add(key)
                frames.append(frame)
        return frames

    async def frames(self, *, follow: bool) -> AsyncGenerator[ProgressFrame, None]:
        try:
            if not follow:
                for frame in await self.read_new():
                    yield frame
                return
            wake = asyncio.Event()

            async def on_message(_: Msg) -> None:
                wake.set()

            subs = [
                await self._nc.subscribe(self._subject, cb=on_message),
                await self._nc.subscribe(
                    subjects.job_actor_filter(self._workflow_id, self._job), cb=on_message
                ),
            ]
            try:
                while True:
                    wake.clear()
                    ended = await self._ends.job_ended()
                    for frame in await self.read_new():  # after the check: nothing is missed
                        yield frame
                    if ended:
                        return
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_FOLLOW_SAFETY_WAIT):
                            await wake.wait()
            finally:
                for sub in subs:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
        finally:
            await self._reader.close()


async def summaries(nc: NATS, workflow_id: str, jobs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The latest progress summary of each of ``jobs`` that reported progress."""
    reader = DirectReader(nc, stream=subjects.LOGS_STREAM, timeout=5.0)
    found: dict[str, dict[str, Any]] = {}
    try:
        for job in jobs:
            message = await reader.last(subjects.progress(workflow_id, job))
            frame = decode_frame(workflow_id, job, message) if message is not None else None
            if frame is not None:
                found[job] = frame.summary
    finally:
        await reader.close()
    return found


class ClientProgress(ClientReads):
    """``Client.progress`` and ``Client.progress_summaries``."""

    async def progress(
        self, workflow_id: str, job: str, *, follow: bool = False
    ) -> AsyncGenerator[ProgressFrame, None]:
        """The job's progress frames (``ctx.progress``) in order, every attempt, each with its
        attempt's summary after it; with ``follow``, until the job has ended.

        Raises ``WorkflowNotFound`` or ``JobNotFound`` for an unknown workflow or job.
        """
        state = await self._state(workflow_id)
        require_id(job, what="job name")
        if job not in state.order:
            raise JobNotFound(workflow_id, job, state.order)
        reader = ProgressReader(self._nc, self._store, workflow_id, job)
        with translated(f"reading the progress of {workflow_id}/{job}", url=self._url):
            async with contextlib.aclosing(reader.frames(follow=follow)) as frames:
                async for frame in frames:
                    yield frame

    async def progress_summaries(self, workflow_id: str) -> dict[str, dict[str, Any]]:
        """The latest progress summary of each job that reported progress (``{}``: none)."""
        state = await self._state(workflow_id)
        with translated(f"reading the progress of {workflow_id}", url=self._url):
            return await summaries(self._nc, workflow_id, state.order)
