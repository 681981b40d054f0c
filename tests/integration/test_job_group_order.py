"""Job concurrency groups serve their waiting attempts in queue order, on a real nats-server with
several workers and slots; a place or a slot held by something dead does not block the line.

Order and overlap are read from the jobs' histories (``JobStarted``/``JobSucceeded``)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from events import subjects
from events.catalog import JobCancelled, JobStarted, JobSucceeded
from events.definition import Concurrency
from sdk.worker import Worker
from sdk.worker.group_line import WAIT_STALE, Holder, Line, decode, encode
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running, unfinished_dispatches

REPO = Path(__file__).resolve().parents[2]
Span = tuple[str, float, float]  # job, started, ended (epoch s) of its successful attempt


async def line_of(nc: NATS, group: str) -> Line:
    kv = await nc.jetstream().key_value(subjects.KV_CONCURRENCY)
    try:
        return decode((await kv.get(group)).value)
    except KeyNotFoundError:
        return Line()


async def waiting(nc: NATS, group: str, count: int) -> None:
    async def all_in_line() -> bool:
        line = await line_of(nc, group)
        assert len(line.waiting) == count, line
        return True

    await assert_eventually(all_in_line, timeout=30, interval=0.1)


async def succeeded(harness: JobsHarness, jobs: list[str], timeout: float = 60) -> list[Span]:
    """Each job's successful attempt, by start: (job, started, ended)."""

    async def all_done() -> list[Span]:
        spans = []
        for job in jobs:
            ended = await harness.events("wf", job, JobSucceeded)
            assert len(ended) == 1, (job, await harness.types("wf", job))
            done = ended[0]
            [start] = [s for s in await harness.events("wf", job, JobStarted)
                       if s.epoch == done.epoch]  # fmt: skip
            spans.append((job, start.started_at.timestamp(), done.ended_at.timestamp()))
        return sorted(spans, key=lambda span: span[1])

    spans: list[Span] = await assert_eventually(all_done, timeout=timeout, interval=0.2)
    return spans


def assert_one_at_a_time(spans: list[Span]) -> None:
    for (before, _, ended), (after, started, _) in itertools.pairwise(spans):
        assert started >= ended, f"{after} started before {before} ended: {spans}"


def blocked_until(marker: Path) -> str:
    return f"while [ ! -f {marker} ]; do sleep 0.05; done"


async def test_waiting_jobs_run_in_the_order_they_were_queued_one_at_a_time(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    label = f"order-{uuid.uuid4().hex[:8]}"
    group = Concurrency(group=f"g-{uuid.uuid4().hex[:10]}", limit=1)

    def worker() -> Worker:
        return Worker(fast_config(nats_url, labels=frozenset([label]), max_concurrent_jobs=3))

    marker = tmp_path / "go"
    jobs = [f"j{n:02d}" for n in range(9)]
    async with running(worker(), worker(), worker()):
        await harness.queue("wf", jobs[0], run=blocked_until(marker), labels=[label],
                            concurrency=group)  # fmt: skip
        await assert_eventually(lambda: harness.events("wf", jobs[0], JobStarted), timeout=30)
        for job in jobs[1:]:
            await harness.queue("wf", job, run="sleep 0.1", labels=[label], concurrency=group)
        await waiting(harness.nc, group.group, len(jobs) - 1)  # every one offered, none ran
        for job in jobs[1:]:
            assert await harness.events("wf", job, JobStarted) == [], job
        marker.touch()
        spans = await succeeded(harness, jobs)
    assert [job for job, _, _ in spans] == jobs
    assert_one_at_a_time(spans)
    assert await line_of(harness.nc, group.group) == Line()  # nothing left behind


async def test_a_dead_claimant_s_place_and_slot_expire(harness: JobsHarness, nats_url: str) -> None:
    """First in line and holding a slot: attempts whose dispatch will never come back (their
    workflow deleted) and whose job is not running. The line moves on once the place expires."""
    label = f"dead-{uuid.uuid4().hex[:8]}"
    group = Concurrency(group=f"g-{uuid.uuid4().hex[:10]}", limit=1)
    kv = await harness.nc.jetstream().key_value(subjects.KV_CONCURRENCY)
    now = time.time()
    ghost = Holder(workflow_id="wf-gone", job="held", attempt=1, worker_id="w-dead", since=0.0,
                   seq=0, seen=0.0)  # fmt: skip
    first = ghost.model_copy(update={"job": "first", "since": now, "seen": now})
    await kv.create(group.group, encode(Line(holders=(ghost,), waiting=(first,))))
    jobs = ["j1", "j2", "j3"]
    worker = Worker(fast_config(nats_url, labels=frozenset([label]), max_concurrent_jobs=3))
    async with running(worker):
        for job in jobs:
            await harness.queue("wf", job, run="sleep 0.1", labels=[label], concurrency=group)
        spans = await succeeded(harness, jobs, timeout=WAIT_STALE + 30)
    assert [job for job, _, _ in spans] == jobs
    assert_one_at_a_time(spans)
    assert spans[0][1] >= now + WAIT_STALE - 0.5  # the dead place was kept until it expired


@pytest.fixture
def spawn(nats_url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(worker_id: str, label: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
        command = [
            sys.executable, "-m", "sdk.cli", "worker", "--nats", nats_url, "--id", worker_id,
            "--labels", label, "--concurrency", "3", "--lease-ttl", "2s", "--heartbeat", "0.5s",
            "--poll-interval", "250ms",
        ]  # fmt: skip
        with (tmp_path / f"{worker_id}.log").open("wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                    env=env)  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_worker_killed_while_holding_the_slot_does_not_block_the_line(
    harness: JobsHarness, spawn: Any, tmp_path: Path
) -> None:
    label = f"kill-{uuid.uuid4().hex[:8]}"
    group = Concurrency(group=f"g-{uuid.uuid4().hex[:10]}", limit=1)
    workers = {name: spawn(name, label) for name in ("w-a", "w-b")}
    # The first job outlives its first worker (killed while it holds the slot; its process
    # group is not stopped, so it ends by itself); its re-run after the lease goes on at once.
    first = f'[ "$JETWORK_WORKER_ID" != "$(cat {tmp_path}/victim)" ] || sleep 15'
    jobs = ["j0", "j1", "j2", "j3"]
    (tmp_path / "victim").write_text("nobody yet")
    await harness.queue("wf", "j0", run=f"sleep 0.5; {first}", labels=[label],
                        concurrency=group)  # fmt: skip
    [claim] = await assert_eventually(
        lambda: harness.events("wf", "j0", JobStarted), timeout=30, interval=0.05
    )
    (tmp_path / "victim").write_text(claim.worker_id)
    for job in jobs[1:]:
        await harness.queue("wf", job, run="sleep 0.1", labels=[label], concurrency=group)
    await waiting(harness.nc, group.group, len(jobs) - 1)
    workers[claim.worker_id].send_signal(signal.SIGKILL)
    spans = await succeeded(harness, jobs)
    assert [job for job, _, _ in spans] == jobs
    assert_one_at_a_time(spans)
    reruns = await harness.events("wf", "j0", JobStarted)
    assert reruns[0].worker_id == claim.worker_id and len(reruns) == 2


async def test_cancel_in_progress_cancels_the_older_members_running_or_waiting(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    label = f"cip-{uuid.uuid4().hex[:8]}"
    group = Concurrency(group=f"g-{uuid.uuid4().hex[:10]}", limit=1, cancel_in_progress=True)
    jobs = ["j0", "j1", "j2", "j3", "j4"]
    worker = Worker(fast_config(nats_url, labels=frozenset([label]), max_concurrent_jobs=4))
    async with running(worker):
        await harness.queue("wf", "j0", run=blocked_until(tmp_path / "never"), labels=[label],
                            concurrency=group)  # fmt: skip
        await assert_eventually(lambda: harness.events("wf", "j0", JobStarted), timeout=30)
        for job in jobs[1:]:
            await harness.queue("wf", job, run="sleep 1", labels=[label], concurrency=group)

        async def ended() -> dict[str, list[str]]:
            types = {job: await harness.types("wf", job) for job in jobs}
            assert "JobSucceeded" in types["j4"], types
            assert all("JobCancelled" in types[job] for job in jobs[:-1]), types
            assert await unfinished_dispatches(harness.nc) == 0  # withdrawn ones acked too
            return types

        types = await assert_eventually(ended, timeout=60, interval=0.2)
    why = f"superseded by wf/j4 in concurrency group {group.group} (cancel_in_progress)"
    cancels = [e for job in jobs[:-1] for e in await harness.events("wf", job, JobCancelled)]
    assert all(c.reason.startswith("superseded by wf/j") for c in cancels), cancels
    assert (await harness.events("wf", "j3", JobCancelled))[0].reason == why, types
    spans = []
    for job in jobs:
        starts = await harness.events("wf", job, JobStarted)
        ends = [e for e in await harness.events("wf", job) if e.event_type in _ENDS]
        spans += [(job, s.started_at.timestamp(), _end_time(ends[-1])) for s in starts]
    assert_one_at_a_time(sorted(spans, key=lambda span: span[1]))
    assert await line_of(harness.nc, group.group) == Line()


_ENDS = frozenset({"JobSucceeded", "JobCancelled"})


def _end_time(event: Any) -> float:
    moment = event.ended_at if isinstance(event, JobSucceeded) else event.at
    return float(moment.timestamp())
