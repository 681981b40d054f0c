"""Reading a job's log lines from ``log.<wf>.<job>`` on JW_LOGS, and following them live.

Workers publish log batches (``{"attempt", "epoch", "chunks": [{"seq", "stream", "line", "ts"}]}``).
Lines are read with direct gets (in stream order, no consumer); following waits on a plain core
NATS subscription to the log subject and the job's events, used only as a wake-up: whatever
arrives, the next lines are read from the stream, so a missed wake-up costs latency, never lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from actors import job
from events import subjects
from events.store import ActorRef, EventStore, StoredMessage

_log = structlog.get_logger("jetwork.client")
# Upper bound on the wait between two reads while following, should a wake-up be missed.
_FOLLOW_SAFETY_WAIT = 2.0
_WORKFLOW_ENDS = frozenset({"WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled"})


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a job attempt wrote. ``stream`` is stdout, stderr, log or system."""

    workflow_id: str
    job: str
    attempt: int
    seq: int
    stream: str
    line: str
    time: datetime

    def __str__(self) -> str:
        return self.line


def decode_batch(workflow_id: str, job_name: str, message: StoredMessage) -> list[LogLine]:
    """The lines of one published batch; a malformed batch is skipped (logs are best effort)."""
    try:
        batch: Any = orjson.loads(message.data)
        attempt = int(batch.get("attempt", 0))
        return [_line(workflow_id, job_name, attempt, chunk) for chunk in batch["chunks"]]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        _log.warning("skipping malformed log batch", subject=message.subject, seq=message.seq,
                     error=repr(exc))  # fmt: skip
        return []


def _line(workflow_id: str, job_name: str, attempt: int, chunk: dict[str, Any]) -> LogLine:
    return LogLine(
        workflow_id=workflow_id,
        job=job_name,
        attempt=attempt,
        seq=int(chunk["seq"]),
        stream=str(chunk.get("stream", "stdout")),
        line=str(chunk["line"]),
        time=datetime.fromtimestamp(float(chunk.get("ts", 0.0)), UTC),
    )


class LogReader:
    """Reads one job's log; ``follow`` keeps reading until the job has ended."""

    def __init__(self, nc: NATS, events: EventStore, workflow_id: str, job_name: str) -> None:
        self._nc = nc
        self._events = events
        self._logs = EventStore(nc, stream=subjects.LOGS_STREAM)
        self._workflow_id = workflow_id
        self._job = job_name
        self._subject = subjects.log(workflow_id, job_name)
        self._next_seq = 1

    async def read_new(self) -> list[LogLine]:
        """Every line published since the last call, in order."""
        messages = await self._logs.read_raw(self._subject, from_seq=self._next_seq)
        if messages:
            self._next_seq = messages[-1].seq + 1
        return _flatten(decode_batch(self._workflow_id, self._job, m) for m in messages)

    async def job_ended(self) -> bool:
        """The job is terminal, or its workflow has ended (a job it never reached stays pending)."""
        events = await self._events.load(ActorRef.job(self._workflow_id, self._job))
        if events and job.replay(events).status.is_terminal:
            return True
        workflow_events = await self._events.load(ActorRef.workflow(self._workflow_id))
        return any(r.event.event_type in _WORKFLOW_ENDS for r in workflow_events)

    async def lines(self, *, follow: bool) -> AsyncGenerator[LogLine, None]:
        if not follow:
            for line in await self.read_new():
                yield line
            return
        wake = asyncio.Event()

        async def on_message(_: Msg) -> None:
            wake.set()

        # Subscribe before reading, so nothing published after the read goes unnoticed.
        subs = [
            await self._nc.subscribe(self._subject, cb=on_message),
            await self._nc.subscribe(
                subjects.job_actor_filter(self._workflow_id, self._job), cb=on_message
            ),
            await self._nc.subscribe(
                subjects.workflow_actor_filter(self._workflow_id), cb=on_message
            ),
        ]
        try:
            while True:
                wake.clear()
                ended = await self.job_ended()
                # Read after checking the end: lines published before the job ended are in.
                for line in await self.read_new():
                    yield line
                if ended:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), _FOLLOW_SAFETY_WAIT)
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()


def _flatten(groups: Iterable[list[LogLine]]) -> list[LogLine]:
    return [line for group in groups for line in group]
