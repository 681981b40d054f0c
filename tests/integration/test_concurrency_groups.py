"""Concurrency groups on a real nats-server: however many workers race, a group never has more
attempts running than its limit; a slot left by a dead worker is found stale from the log."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client as NATS

from events.catalog import JobSpec, JobStarted, JobSucceeded
from events.definition import Concurrency
from events.store import EventStore
from sdk.worker import Worker
from sdk.worker.concurrency import ConcurrencyGroups, Holder
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running


def group(limit: int) -> Concurrency:
    return Concurrency(group=f"g-{uuid.uuid4().hex[:10]}", limit=limit)


def holder(n: int, since: float = 1e12) -> Holder:
    return Holder(workflow_id=f"wf-{n}", job="j", attempt=1, worker_id="w", since=since)


async def started_groups(nc: NATS, count: int) -> list[ConcurrencyGroups]:
    made = [ConcurrencyGroups() for _ in range(count)]
    for groups in made:
        await groups.start(nc.jetstream(), EventStore(nc))
    return made


async def test_racing_entries_never_exceed_the_limit(clean_nats: NATS) -> None:
    spec = JobSpec(run="true", concurrency=group(limit=2))
    racers = await started_groups(clean_nats, 4)
    entered = await asyncio.gather(*(racers[n % 4].enter(spec, holder(n)) for n in range(20)))
    assert sum(entered) == 2
    first = next(n for n, ok in enumerate(entered) if ok)
    assert not await racers[0].enter(spec, holder(99))  # full
    await racers[1].leave(spec.concurrency.group, holder(first))  # type: ignore[union-attr]
    assert await racers[0].enter(spec, holder(99))  # a slot given back is taken


async def test_a_job_holding_a_slot_takes_it_again_and_a_stale_slot_is_dropped(
    clean_nats: NATS,
) -> None:
    spec = JobSpec(run="true", concurrency=group(limit=1))
    [groups] = await started_groups(clean_nats, 1)
    assert await groups.enter(spec, holder(1))
    assert await groups.enter(spec, holder(1))  # its own job again (a claim after a lost lease)
    assert not await groups.enter(spec, holder(2))  # recent: kept, although wf-1 never started
    [old] = await started_groups(clean_nats, 1)
    await old.leave(spec.concurrency.group, holder(1))  # type: ignore[union-attr]
    assert await groups.enter(spec, holder(3, since=0.0))  # a holder from long ago …
    assert await groups.enter(spec, holder(4))  # … whose job is not running: dropped


async def test_workers_never_run_more_of_a_group_than_its_limit(
    harness: JobsHarness, nats_url: str
) -> None:
    label, shared = f"cg-{uuid.uuid4().hex[:8]}", group(limit=2)

    def worker() -> Worker:
        return Worker(fast_config(nats_url, labels=frozenset([label]), max_concurrent_jobs=3))

    async with running(worker(), worker(), worker()):
        jobs = [f"j{n}" for n in range(8)]
        for job in jobs:
            await harness.queue("wf", job, run="sleep 0.2", labels=[label], concurrency=shared)

        async def all_succeeded() -> list[tuple[float, float]]:
            spans = []
            for job in jobs:
                started = await harness.events("wf", job, JobStarted)
                ended = await harness.events("wf", job, JobSucceeded)
                assert started and ended, job
                spans.append((started[-1].started_at.timestamp(), ended[-1].ended_at.timestamp()))
            return spans

        spans = await assert_eventually(all_succeeded, timeout=60, interval=0.2)
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running_now, most = 0, 0
    for _, step in edges:
        running_now += step
        most = max(most, running_now)
    assert most <= 2, spans
