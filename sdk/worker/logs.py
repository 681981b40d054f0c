"""Job logs on ``log.<wf>.<job>``: the batch format and the publisher a ``LogBuffer`` flushes to.

One message is one batch of numbered lines of one attempt; ``seq`` restarts at 1 with every
attempt, so ``(attempt, epoch, seq)`` orders a job's whole log. Batches are published with
JetStream acks, one at a time per attempt, so they are stored in order. A worker's batch carries
a ``Nats-Msg-Id`` (attempt, epoch, first seq: its lines are numbered without gaps): a publish
retried after a lost ack is stored once within the stream's duplicate window, and readers skip a
message id they have read already beyond it. (Lines pushed through the HTTP gateway number
themselves and carry no id.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import orjson
from nats.js import JetStreamContext
from pydantic import BaseModel, ConfigDict

from events import subjects
from sdk.worker.config import WorkerConfig
from sdk.worker.log_buffer import FlushCallback, LogBuffer, LogChunk, LogStream, truncate_line

HEADER_MARGIN: Final = 1024


class LogLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    stream: LogStream
    line: str
    ts: float


class LogBatch(BaseModel):
    """The body of one message on ``log.<wf>.<job>``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str
    job: str
    attempt: int
    epoch: int
    worker_id: str
    chunks: tuple[LogLine, ...]

    @classmethod
    def decode(cls, data: bytes) -> LogBatch:
        return cls.model_validate_json(data)


def attempt_log(
    js: JetStreamContext,
    config: WorkerConfig,
    *,
    workflow_id: str,
    job: str,
    attempt: int,
    epoch: int,
    worker_id: str,
    max_payload: int,
    keep_trying: Callable[[], bool],
    give_up_after: float,
    claimed: Callable[[], Awaitable[bool]] | None = None,
) -> LogBuffer:
    """The ``LogBuffer`` of one claim of a job, publishing to ``log.<wf>.<job>`` with the
    worker's (or the job's handler's) log settings. ``claimed``: a claim not appended yet
    (``WorkerConfig.claim_window``), appended before the first batch (``ClaimedFirst``)."""
    publisher: FlushCallback = log_publisher(
        js,
        workflow_id=workflow_id,
        job=job,
        attempt=attempt,
        epoch=epoch,
        worker_id=worker_id,
        max_payload=max_payload,
        msg_ids=True,
    )
    if claimed is not None:
        publisher = ClaimedFirst(publisher, claimed)
    return LogBuffer(
        publisher,
        interval=config.log_batch_interval,
        max_line_bytes=config.max_log_line_bytes,
        batch_max_lines=config.log_batch_max_lines,
        batch_max_bytes=config.log_batch_max_bytes,
        max_pending_lines=config.log_buffer_max_lines,
        max_pending_bytes=config.log_buffer_max_bytes,
        max_total_bytes=config.max_log_bytes,
        keep_trying=keep_trying,
        give_up_after=give_up_after,
    )


def log_publisher(
    js: JetStreamContext,
    *,
    workflow_id: str,
    job: str,
    attempt: int,
    epoch: int,
    worker_id: str,
    max_payload: int,
    timeout: float = 5.0,
    msg_ids: bool = False,
) -> FlushCallback:
    """The ``flush`` callback of one attempt's ``LogBuffer``.

    A batch whose JSON would exceed the server's ``max_payload`` (escaping can grow a line
    several times) is split in halves until each part fits; a single line that still does not
    fit is cut (``max_log_line_bytes`` above the server's limit).
    """
    head = {
        "workflow_id": workflow_id,
        "job": job,
        "attempt": attempt,
        "epoch": epoch,
        "worker_id": worker_id,
    }
    msg_id = f"{workflow_id}.{job}.{attempt}.{epoch}" if msg_ids else None
    return _LogPublisher(js, subjects.log(workflow_id, job), head, max_payload, timeout, msg_id)


class ClaimedFirst:
    """A flush callback that has its attempt's claim appended before it publishes: a run's
    lines are only ever published under a claim the log holds, so an epoch names one run.
    A claim the log refused (the run does not count) leaves its lines unpublished."""

    __slots__ = ("_claimed", "_publish")

    def __init__(self, publish: FlushCallback, claimed: Callable[[], Awaitable[bool]]) -> None:
        self._publish = publish
        self._claimed = claimed

    async def __call__(self, chunks: Sequence[LogChunk]) -> None:
        if await self._claimed():
            await self._publish(chunks)


class _LogPublisher:
    """``log_publisher``'s callback. A class, not a closure: a closure that calls itself (the
    halving below) is a reference cycle, left for the collector after every attempt."""

    __slots__ = ("_head", "_js", "_limit", "_msg_id", "_subject", "_timeout")

    def __init__(
        self,
        js: JetStreamContext,
        subject: str,
        head: dict[str, Any],
        max_payload: int,
        timeout: float,
        msg_id: str | None,
    ) -> None:
        self._js = js
        self._subject = subject
        self._head = head
        self._limit = max_payload - HEADER_MARGIN
        self._timeout = timeout
        self._msg_id = msg_id  # its prefix; None: no msg ids

    def _encode(self, chunks: Sequence[LogChunk]) -> bytes:
        lines = [{"seq": c.seq, "stream": c.stream, "line": c.line, "ts": c.ts} for c in chunks]
        return orjson.dumps({**self._head, "chunks": lines})

    async def __call__(self, chunks: Sequence[LogChunk]) -> None:
        data = self._encode(chunks)
        limit = self._limit
        if len(data) > limit and len(chunks) > 1:
            middle = len(chunks) // 2
            await self(chunks[:middle])
            await self(chunks[middle:])
            return
        if len(data) > limit:
            (chunk,) = chunks
            line, _ = truncate_line(chunk.line, max(1, limit // 8))
            data = self._encode(
                [LogChunk(seq=chunk.seq, stream=chunk.stream, line=line, ts=chunk.ts)]
            )
        if self._msg_id is None:
            await self._js.publish(self._subject, data, timeout=self._timeout)
            return
        msg_id = f"{self._msg_id}.{chunks[0].seq}"
        headers = {"Nats-Msg-Id": msg_id}
        await self._js.publish(self._subject, data, timeout=self._timeout, headers=headers)
