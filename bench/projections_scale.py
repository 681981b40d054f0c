"""Scale check of the projections (not a test): listing with 100k workflows, projector rate.

``python -m bench.projections_scale [--count 100000] [--events-workflows 2000] [--sync 2m]``

1. Writes ``count`` workflow views straight into the store (no engine), the way the projector
   would over time: each workflow gets its running view when it starts and its final view when
   it ends (2% stay running; 80% succeed, 3% fail, 15% are cancelled), start times 10 ms apart,
   five workflow names, three jobs each.
2. Times ``Views.list`` for every status, a name, status and name, and a few limits (p50/p95 of
   repeated calls), beside the naive alternative: reading every summary and sorting.
3. Appends the full histories of ``events-workflows`` three-job workflows to the event log and
   times a projector catching up on them from nothing (events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from actors.definitions import parse_workflow
from events.catalog import (
    JobQueued,
    JobSpec,
    JobStarted,
    JobSucceeded,
    WorkflowStarted,
    WorkflowSucceeded,
)
from events.connection import NatsSettings, connect
from events.definition import WorkflowDefinition
from events.errors import StoreError
from events.store import ActorRef, EventStore
from events.topology import ensure_topology
from projections import Projector, ProjectorSettings, Views
from projections._nats import Direct, Publisher
from projections.index import micros
from projections.recent import RecentWriter
from projections.store import KV_PREFIX, KV_STREAM, ViewStore, Written, summary_of
from projections.views import JobView, WorkflowSummary, WorkflowView
from sdk.embedded_server import EmbeddedServer

NAMES = ("build", "deploy", "etl", "report", "release")
JOBS = ("fetch", "work", "publish")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _view(
    wf: str, name: str, status: str, started: datetime, ended: datetime | None
) -> WorkflowView:
    job_status = "running" if status == "running" else status
    jobs = {
        job: JobView(
            status=job_status if job == "publish" else "succeeded",
            attempts=1,
            worker_id="w-1",
            started_at=started,
            ended_at=ended if job != "publish" or ended else None,
        )
        for job in JOBS
    }
    return WorkflowView(
        workflow_id=wf, name=name, status=status, started_at=started, ended_at=ended, jobs=jobs
    )


def _timeline(count: int, rng: random.Random) -> list[tuple[datetime, int, WorkflowView]]:
    moments: list[tuple[datetime, int, WorkflowView]] = []
    for i in range(count):
        wf, name = f"wf-{i:06d}", rng.choice(NAMES)
        started = BASE + timedelta(milliseconds=10 * i + rng.randrange(10))
        moments.append((started, i, _view(wf, name, "running", started, None)))
        roll = rng.random()
        if roll < 0.02:
            continue
        status = "succeeded" if roll < 0.82 else "failed" if roll < 0.85 else "cancelled"
        ended = started + timedelta(seconds=rng.uniform(0.1, 60))
        moments.append((ended, i, _view(wf, name, status, started, ended)))
    moments.sort(key=lambda moment: moment[0])
    return moments


async def populate(nc: NATS, count: int) -> tuple[float, int]:
    """Write the views as a projector would; returns (seconds, writes)."""
    store = ViewStore(nc, generation=1)
    recent = RecentWriter(Direct(nc, KV_STREAM), Publisher(nc), prefix=KV_PREFIX, generation=1)
    written: dict[int, Written] = {}
    retries = [0]
    moments = _timeline(count, random.Random(42))
    began = time.perf_counter()
    for at in range(0, len(moments), 256):
        chunk = moments[at : at + 256]
        seqs = range(at + 1, at + 1 + len(chunk))

        async def write(i: int, view: WorkflowView, seq: int) -> None:
            for attempt in range(5):  # as the projector would: retried when the server is slow
                try:
                    written[i] = await store.write(view, seq, written.get(i, Written()))
                    break
                except StoreError:
                    if attempt == 4:
                        raise
                    retries[0] += 1
            started = micros(view.started_at)
            await recent.note(
                view.workflow_id, name=view.name, status=view.status, started_us=started
            )

        await asyncio.gather(
            *(write(i, view, seq) for (_, i, view), seq in zip(chunk, seqs, strict=True))
        )
        await recent.flush()  # once per batch, as the projector does
        await store.mark_index()  # likewise: bounds the listing scan
        if at % 25_600 == 0:
            print(f"  … {at} writes, {time.perf_counter() - began:.0f}s", file=sys.stderr)
    if retries[0]:
        print(f"  {retries[0]} writes retried (server slow to answer)", file=sys.stderr)
    return time.perf_counter() - began, len(moments)


async def timed(call: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


async def naive_list(nc: NATS) -> list[WorkflowSummary]:
    """What listing costs without the index: every summary read, then sorted."""
    direct = Direct(nc, KV_STREAM, timeout=60)
    stored = await direct.all("$KV.jw_workflows.g1.s.>")
    rows = [summary_of(message) for message in stored if not message.is_tombstone]
    rows.sort(key=lambda row: (row.started_at or BASE, row.workflow_id), reverse=True)
    return rows[:50]


async def append_finished(
    events: EventStore,
    wf: str,
    definition: WorkflowDefinition,
    now: datetime,
    inputs: dict[str, Any] | None = None,
    jobs: tuple[str, ...] = JOBS,
) -> None:
    """One finished history: the workflow started, each of ``jobs`` queued, started and
    succeeded, the workflow succeeded (what the projector folds in the benchmarks)."""
    first = await events.append(
        ActorRef.workflow(wf),
        [
            WorkflowStarted(
                workflow_id=wf, definition=definition, started_at=now, inputs=inputs or {}
            )
        ],
        expected_seq=0,
        command_id=f"{wf}-start",
    )
    for job in jobs:
        ids = {"workflow_id": wf, "job": job}
        await events.append(
            ActorRef.job(wf, job),
            [
                JobQueued(**ids, attempt=1, spec=JobSpec(run="true"), queued_at=now),
                JobStarted(**ids, attempt=1, epoch=1, worker_id="w", lease_ttl=30, started_at=now),
                JobSucceeded(**ids, attempt=1, epoch=1, ended_at=now),
            ],
            expected_seq=0,
            command_id=f"{wf}-{job}",
        )
    await events.append(
        ActorRef.workflow(wf),
        [WorkflowSucceeded(workflow_id=wf, ended_at=now)],
        expected_seq=first,
        command_id=f"{wf}-end",
    )


async def projector_rate(nc: NATS, workflows: int) -> tuple[int, float]:
    """Append ``workflows`` finished three-job histories, then time a projector over them."""
    events = EventStore(nc)
    definition = parse_workflow({"name": "bench", "jobs": {job: {"run": "true"} for job in JOBS}})
    limit = asyncio.Semaphore(128)

    async def one(i: int) -> None:
        async with limit:
            await append_finished(events, f"ev-{i:05d}", definition, BASE + timedelta(seconds=i))

    await asyncio.gather(*(one(i) for i in range(workflows)))
    total = workflows * (2 + 3 * len(JOBS))
    views = Views(nc)
    projector = Projector(nc, settings=ProjectorSettings())
    began = time.perf_counter()
    await projector.start()
    await views.wait_caught_up(timeout=3600, interval=0.05)
    seconds = time.perf_counter() - began
    await projector.stop()
    assert await views.get("ev-00000") is not None
    return total, seconds


async def run(count: int, event_workflows: int, sync_interval: str) -> str:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedServer(data_dir=Path(data), sync_interval=sync_interval)
        server.start()
        try:
            nc = await connect(NatsSettings(url=server.url, name="bench-projections"))
            await ensure_topology(nc.jetstream())
            seconds, writes = await populate(nc, count)
            lines.append(
                f"populate: {count} workflows, {writes} view writes in {seconds:.1f}s "
                f"({writes / seconds:,.0f} writes/s)"
            )
            for label, views in (
                ("recent lists + index", Views(nc)),
                ("index scan only", Views(nc, recent_lists=False)),
            ):
                lines.append(f"-- {label}")
                lines += await _queries(views)
            p50, _ = await timed(lambda: naive_list(nc), 1)
            lines.append(f"{'naive: read every summary, sort':40s} {p50:7.0f} ms")
            total, seconds = await projector_rate(nc, event_workflows)
            lines.append(
                f"projector: {total} events of {event_workflows} workflows in {seconds:.2f}s "
                f"({total / seconds:,.0f} events/s, from nothing, one process)"
            )
            await nc.close()
        finally:
            server.stop()
    return "\n".join(lines)


async def _queries(views: Views) -> list[str]:
    lines = []
    queries: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("list()", lambda: views.list()),
        ("list(limit=1)", lambda: views.list(limit=1)),
        ("list(limit=500)", lambda: views.list(limit=500)),
        *[
            (f"list(status={s!r})", lambda s=s: views.list(status=s))
            for s in ("running", "succeeded", "failed", "cancelled")
        ],
        ("list(name='etl')", lambda: views.list(name="etl")),
        (
            "list(status='failed', name='etl')",
            lambda: views.list(status="failed", name="etl"),
        ),
        ("get(one workflow)", lambda: views.get("wf-050000")),
    ]
    for label, call in queries:
        p50, p95 = await timed(call, 30)
        lines.append(f"{label:40s} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.projections_scale", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="workflow views to write")
    parser.add_argument("--events-workflows", type=int, default=2_000)
    parser.add_argument("--sync", default="2m", help="nats-server sync_interval")
    args = parser.parse_args()
    print(asyncio.run(run(args.count, args.events_workflows, args.sync)))


if __name__ == "__main__":
    main()
