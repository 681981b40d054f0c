"""Reading a job's log lines from ``log.<wf>.<job>`` on JW_LOGS, and following them live.

Workers publish log batches (``{"attempt", "epoch", "worker_id", "chunks": [{"seq", "stream",
"line", "ts"}]}``); ``seq`` numbers one claim's lines across stdout and stderr in the order they
were written. Lines are read with direct gets (in stream order, no consumer); a batch stored
twice (a publish retried after a lost ack) is read once (by its message id). Following waits on
a plain core NATS subscription to the log subject and the job's events, used only as a wake-up:
whatever arrives, the next lines are read from the stream, so a missed wake-up costs latency,
never lines.

With ``claims``, the lines come with a ``Claim`` before each claim's lines: one per
``JobStarted`` of the job (an attempt, or a lease taken over within one), also for a claim that
wrote nothing, and again when lines of an earlier claim come after a later one's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from actors import job
from events import subjects
from events.base import RecordedEvent
from events.catalog import JobEvent, JobStarted, with_implied_starts
from events.store import ActorRef, EventStore, StoredMessage

_log = structlog.get_logger("jetwork.client")
# Upper bound on the wait between two reads while following, should a wake-up be missed.
_FOLLOW_SAFETY_WAIT = 2.0
_WORKFLOW_ENDS = frozenset({"WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled"})
_WORKFLOW_TURNS = _WORKFLOW_ENDS | {"WorkflowRetried", "WorkflowRerun"}


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a job attempt wrote. ``stream`` is stdout, stderr, log (``ctx.log``) or system
    (jetwork's own notes); ``epoch`` names the claim that ran it."""

    workflow_id: str
    job: str
    attempt: int
    seq: int
    stream: str
    line: str
    time: datetime
    epoch: int = 0
    worker_id: str = ""

    def __str__(self) -> str:
        return self.line


@dataclass(frozen=True, slots=True)
class Claim:
    """A worker took the job (``JobStarted``): the lines that follow are this claim's.

    ``claim`` counts the claims of one attempt (2 and more: the lease was taken over by another
    delivery); ``again`` marks a repeat, when lines of this claim follow a later claim's.
    """

    attempt: int
    epoch: int
    worker_id: str
    claim: int = 1
    again: bool = False
    started_at: datetime | None = None


def decode_batch(workflow_id: str, job_name: str, message: StoredMessage) -> list[LogLine]:
    """The lines of one published batch; a malformed batch is skipped (and logged)."""
    try:
        batch: Any = orjson.loads(message.data)
        attempt = int(batch.get("attempt", 0))
        epoch = int(batch.get("epoch", attempt))
        worker = str(batch.get("worker_id", ""))
        return [
            _line(workflow_id, job_name, attempt, epoch, worker, chunk) for chunk in batch["chunks"]
        ]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        _log.warning("skipping malformed log batch", subject=message.subject, seq=message.seq,
                     error=repr(exc))  # fmt: skip
        return []


def _line(
    workflow_id: str, job_name: str, attempt: int, epoch: int, worker: str, chunk: dict[str, Any]
) -> LogLine:
    return LogLine(
        workflow_id=workflow_id,
        job=job_name,
        attempt=attempt,
        seq=int(chunk["seq"]),
        stream=str(chunk.get("stream", "stdout")),
        line=str(chunk["line"]),
        time=datetime.fromtimestamp(float(chunk.get("ts", 0.0)), UTC),
        epoch=epoch,
        worker_id=worker,
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
        self._seen_ids: set[str] = set()  # Nats-Msg-Id of the batches read
        self._claims = _ClaimOrder()

    async def read_new(self) -> list[LogLine]:
        """Every line published since the last call, in order."""
        messages = await self._logs.read_raw(self._subject, from_seq=self._next_seq)
        if messages:
            self._next_seq = messages[-1].seq + 1
        return [
            line
            for message in messages
            if self._first_time(message)
            for line in decode_batch(self._workflow_id, self._job, message)
        ]

    async def job_ended(self, events: list[RecordedEvent] | None = None) -> bool:
        """The job is terminal, or its workflow has ended (a job it never reached stays pending)."""
        if events is None:
            events = await self._job_events()
        if events and job.replay(events).status.is_terminal:
            return True
        workflow_events = await self._events.load(ActorRef.workflow(self._workflow_id))
        # The last word of the workflow actor: an end, unless an operator's retry followed it.
        turns = [r for r in workflow_events if r.event.event_type in _WORKFLOW_TURNS]
        return bool(turns) and turns[-1].event.event_type in _WORKFLOW_ENDS

    async def lines(
        self, *, follow: bool, claims: bool = False
    ) -> AsyncGenerator[LogLine | Claim, None]:
        """The log in order; with ``claims`` a ``Claim`` before each claim's lines."""
        if not follow:
            events = await self._job_events() if claims else []
            for entry in self._merge(await self.read_new(), events, claims=claims):
                yield entry
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
                events = await self._job_events()
                ended = await self.job_ended(events)
                # Read after checking the end: lines published before the job ended are in.
                for entry in self._merge(await self.read_new(), events, claims=claims):
                    yield entry
                if ended:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_FOLLOW_SAFETY_WAIT):
                        await wake.wait()
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _job_events(self) -> list[RecordedEvent]:
        return await self._events.load(ActorRef.job(self._workflow_id, self._job))

    def _first_time(self, message: StoredMessage) -> bool:
        """False for a batch stored twice (a publish retried after a lost ack, beyond the
        stream's duplicate window): it has the message id of one already read."""
        msg_id = message.headers.get("Nats-Msg-Id")
        if msg_id is None:
            return True
        if msg_id in self._seen_ids:
            return False
        self._seen_ids.add(msg_id)
        return True

    def _merge(
        self, lines: list[LogLine], events: list[RecordedEvent], *, claims: bool
    ) -> Iterator[LogLine | Claim]:
        if not claims:
            yield from lines
            return
        order = self._claims
        # A short run records its claim inside its result (no ``JobStarted`` of its own).
        job_events = [r.event for r in events if isinstance(r.event, JobEvent)]
        order.learn(e for e in with_implied_starts(job_events) if isinstance(e, JobStarted))
        for line in lines:
            yield from order.before(line)
            yield line
        yield from order.rest()  # claims that wrote nothing (yet)


class _ClaimOrder:
    """Which ``Claim`` markers to put before lines (see the module docstring)."""

    def __init__(self) -> None:
        self._known: dict[int, Claim] = {}  # epoch -> claim
        self._shown: set[int] = set()
        self._current: int | None = None

    def learn(self, started: Iterable[JobStarted]) -> None:
        per_attempt: dict[int, int] = {}
        for event in sorted(started, key=lambda e: e.epoch):
            per_attempt[event.attempt] = per_attempt.get(event.attempt, 0) + 1
            self._known.setdefault(
                event.epoch,
                Claim(
                    attempt=event.attempt,
                    epoch=event.epoch,
                    worker_id=event.worker_id,
                    claim=per_attempt[event.attempt],
                    started_at=event.started_at,
                ),
            )

    def before(self, line: LogLine) -> Iterator[Claim]:
        if line.epoch == self._current:
            return
        if line.epoch not in self._known:  # lines read before their claim: name it from them
            self._known[line.epoch] = Claim(
                attempt=line.attempt, epoch=line.epoch, worker_id=line.worker_id
            )
        for epoch in sorted(self._known):
            if epoch < line.epoch and epoch not in self._shown:
                yield self._show(epoch)
        claim = self._known[line.epoch]
        if line.epoch in self._shown:
            claim = Claim(
                attempt=claim.attempt,
                epoch=claim.epoch,
                worker_id=claim.worker_id,
                claim=claim.claim,
                again=True,
                started_at=claim.started_at,
            )
        self._shown.add(line.epoch)
        self._current = line.epoch
        yield claim

    def rest(self) -> Iterator[Claim]:
        for epoch in sorted(self._known):
            if epoch not in self._shown:
                yield self._show(epoch)

    def _show(self, epoch: int) -> Claim:
        self._shown.add(epoch)
        self._current = epoch
        return self._known[epoch]
