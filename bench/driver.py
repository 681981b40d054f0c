"""The client side of a benchmark: start workflows, see them end, read their timelines back.

Workflows are started the way clients do (a ``StartRequest`` published to
``cmd.<p>.start.<wf>`` with ``Nats-Msg-Id``). Their ends are seen on core subscriptions to the
event subjects (as ``jetwork watch`` would see them): the receive time is "completion
visible". After a run the events are read back from the log (batched direct get) and turned
into per-job timelines from the events' own times (``JobQueued.queued_at``,
``JobStarted.started_at``, ``JobSucceeded.ended_at``: the engine's and the workers' clocks, on
this one machine).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.requests import StartRequest, request_msg_id
from events.store import EventStore

_ENDS = ("WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled")


@dataclass
class JobTimes:
    queued: float | None = None
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None
    seen_done: float | None = None  # JobSucceeded/JobFailed received by the driver


@dataclass
class WorkflowTimes:
    started: float | None = None
    ended: float | None = None
    outcome: str | None = None
    jobs: dict[str, JobTimes] = field(default_factory=dict)

    def job(self, name: str) -> JobTimes:
        times = self.jobs.get(name)
        if times is None:
            times = self.jobs[name] = JobTimes()
        return times


@dataclass
class Batch:
    """The workflows of one measured run and what the driver saw of them."""

    ids: list[str]
    submitted: dict[str, float] = field(default_factory=dict)
    ended: dict[str, tuple[str, float]] = field(default_factory=dict)
    queued_seen: int = 0
    jobs_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    all_queued: asyncio.Event = field(default_factory=asyncio.Event)
    expect_queued: int = 0
    jobs_done: asyncio.Event = field(default_factory=asyncio.Event)
    expect_jobs: int = 0

    @property
    def first_submit(self) -> float:
        return min(self.submitted.values())

    @property
    def last_end(self) -> float:
        return max(at for _, at in self.ended.values())

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome, _ in self.ended.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts


class Driver:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=30)
        self.store = EventStore(nc, request_timeout=30)
        self._batches: dict[str, Batch] = {}
        self._subs: list[Any] = []
        self._observing: set[str] = set()

    async def start(self) -> None:
        # Only the ends, as a user waiting for workflows would: every event the driver follows
        # costs its process and nats-server CPU beside the system measured (following every
        # job's end and queueing took 0.07 ms per job of S3's 1.02; docs/performance.md).
        for end in _ENDS:
            self._subs.append(
                await self.nc.subscribe(subjects.events_of_type(end), cb=self._on_end)
            )

    async def observe(self, *, jobs: bool = False, queued: bool = False) -> None:
        """Also follow every job's end (``Batch.jobs_seen``, ``jobs_done``) or queueing
        (``all_queued``), for the scenarios that time them (once each)."""
        wanted = {
            "JobSucceeded": (jobs, self._on_job_done),
            "JobFailed": (jobs, self._on_job_done),
            "JobQueued": (queued, self._on_queued),
        }
        for kind, (want, callback) in wanted.items():
            if want and kind not in self._observing:
                self._observing.add(kind)
                self._subs.append(
                    await self.nc.subscribe(subjects.events_of_type(kind), cb=callback)
                )

    def expect(self, ids: Iterable[str], *, queued: int = 0, jobs: int = 0) -> Batch:
        batch = Batch(ids=list(ids), expect_queued=queued, expect_jobs=jobs)
        for wf in batch.ids:
            self._batches[wf] = batch
        return batch

    async def _on_end(self, msg: Msg) -> None:
        now = time.time()
        parsed = subjects.parse_event_subject(msg.subject)
        if parsed is None:
            return
        wf, kind = parsed.workflow_id, parsed.event_type
        batch = self._batches.get(wf)
        if batch is None or wf in batch.ended:
            return
        batch.ended[wf] = (kind, now)
        if len(batch.ended) == len(batch.ids):
            batch.done.set()

    async def _on_job_done(self, msg: Msg) -> None:
        now = time.time()
        parsed = subjects.parse_event_subject(msg.subject)
        if parsed is None or parsed.job is None:
            return
        wf, job = parsed.workflow_id, parsed.job
        batch = self._batches.get(wf)
        if batch is not None:
            batch.jobs_seen.setdefault((wf, job), now)
            if batch.expect_jobs and len(batch.jobs_seen) >= batch.expect_jobs:
                batch.jobs_done.set()

    async def _on_queued(self, msg: Msg) -> None:
        batch = self._batches.get(subjects.workflow_of(msg.subject))
        if batch is not None and batch.expect_queued:
            batch.queued_seen += 1
            if batch.queued_seen >= batch.expect_queued:
                batch.all_queued.set()

    # --- starting workflows --------------------------------------------------------------------

    def _request(self, wf: str, definition: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        request = StartRequest(workflow_id=wf, definition=definition)
        headers = {"Nats-Msg-Id": request_msg_id(request)}
        return request.subject(), request.model_dump_json().encode(), headers

    async def submit(
        self,
        batch: Batch,
        definition: dict[str, Any] | Sequence[dict[str, Any]],
        *,
        in_flight: int = 512,
    ) -> None:
        """Start every workflow of ``batch`` as fast as the server takes them (pipelined). A list
        of definitions is taken in turn (workflow ``i`` gets ``definition[i % len]``)."""
        limit = asyncio.Semaphore(in_flight)
        shapes = [definition] if isinstance(definition, dict) else list(definition)
        prepared = [
            self._request(wf, shapes[index % len(shapes)]) for index, wf in enumerate(batch.ids)
        ]

        async def one(wf: str, request: tuple[str, bytes, dict[str, str]]) -> None:
            async with limit:
                batch.submitted[wf] = time.time()
                await self.js.publish(request[0], request[1], headers=request[2])

        await asyncio.gather(*(one(wf, req) for wf, req in zip(batch.ids, prepared, strict=True)))

    async def submit_open_loop(
        self, batch: Batch, definition: dict[str, Any], *, rate: float
    ) -> float:
        """Start one workflow every ``1/rate`` s whatever happens to earlier ones; returns the
        largest lag of a start behind its schedule (the driver's own accuracy)."""
        prepared = [self._request(wf, definition) for wf in batch.ids]
        pending: set[asyncio.Task[None]] = set()
        begin = time.perf_counter() + 0.05
        lag = 0.0

        async def one(wf: str, request: tuple[str, bytes, dict[str, str]]) -> None:
            batch.submitted[wf] = time.time()
            await self.js.publish(request[0], request[1], headers=request[2])

        for index, (wf, request) in enumerate(zip(batch.ids, prepared, strict=True)):
            due = begin + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            lag = max(lag, time.perf_counter() - due)
            task = asyncio.create_task(one(wf, request))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        return lag

    async def wait(self, batch: Batch, *, timeout: float) -> bool:
        """True when every workflow of ``batch`` ended within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(batch.done.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- reading back --------------------------------------------------------------------------

    async def last_seq(self) -> int:
        info = await self.js.stream_info(subjects.EVENTS_STREAM)
        return int(info.state.last_seq)

    async def timelines(self, ids: Iterable[str], *, from_seq: int) -> dict[str, WorkflowTimes]:
        """The timelines of workflows ``ids`` from the events appended after ``from_seq``."""
        wanted = set(ids)
        found: dict[str, WorkflowTimes] = {}
        for message in await self.store.read_raw(subjects.EVENTS_ALL, from_seq=from_seq + 1):
            parsed = subjects.parse_event_subject(message.subject)
            if parsed is None or parsed.workflow_id not in wanted:
                continue
            wf = found.get(parsed.workflow_id)
            if wf is None:
                wf = found[parsed.workflow_id] = WorkflowTimes()
            _apply(wf, parsed, orjson.loads(message.data))
        return found


def _time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _apply(wf: WorkflowTimes, parsed: subjects.EventSubject, body: dict[str, Any]) -> None:
    kind = parsed.event_type
    if parsed.job is None:
        if kind == "WorkflowStarted":
            wf.started = _time(body.get("started_at"))
        elif kind in _ENDS:
            wf.ended = _time(body.get("ended_at"))
            wf.outcome = kind
        return
    job = wf.job(parsed.job)
    if kind == "JobQueued":
        job.queued = _time(body.get("queued_at"))
    elif kind == "JobStarted":
        job.started = _time(body.get("started_at"))
    elif kind in ("JobSucceeded", "JobFailed"):
        job.ended = _time(body.get("ended_at"))
        job.outcome = kind
        claimed = body.get("claimed")
        if isinstance(claimed, dict):  # a short run's claim, recorded with its result
            job.started = _time(claimed.get("started_at"))
