"""Concurrency groups on a real nats-server: however many workers race, a group never has more
attempts running than its limit, and its waiters keep their order; a slot left by a dead worker is
found stale from the log, a place not kept up expires."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from nats.aio.client import Client as NATS

from actors._state import updated
from actors.job import pending
from events.catalog import JobSpec, JobStarted, JobStatus, JobSucceeded
from events.definition import Concurrency
from events.store import EventStore
from sdk.worker import Worker
from sdk.worker.concurrency import STALE_AFTER, ConcurrencyGroups, Holder
from sdk.worker.group_line import WAIT_STALE, runs_elsewhere
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running


def group(limit: int) -> Concurrency:
    return Concurrency(group=f"g-{uuid.uuid4().hex[:10]}", limit=limit)


def holder(n: int, since: float = 1e12) -> Holder:
    return Holder(workflow_id=f"wf-{n}", job="j", attempt=1, worker_id="w", since=since, seq=n,
                  seen=since)  # fmt: skip


async def started_groups(
    nc: NATS, count: int, clock: Callable[[], float] = time.time
) -> list[ConcurrencyGroups]:
    made = [ConcurrencyGroups(clock) for _ in range(count)]
    for groups in made:
        await groups.start(nc.jetstream(), EventStore(nc))
    return made


async def test_racing_entries_never_exceed_the_limit_and_waiters_keep_their_order(
    clean_nats: NATS,
) -> None:
    spec = JobSpec(run="true", concurrency=group(limit=2))
    racers = await started_groups(clean_nats, 4)
    entered = await asyncio.gather(*(racers[n % 4].enter(spec, holder(n)) for n in range(20)))
    assert entered.count("held") == 2 and entered.count("waiting") == 18
    held = [n for n, entry in enumerate(entered) if entry == "held"]
    next_in_line = min(n for n in range(20) if n not in held)
    await racers[1].leave(spec.concurrency.group, holder(held[0]))  # type: ignore[union-attr]
    assert await racers[0].enter(spec, holder(99)) == "waiting"  # behind the 18 already waiting
    assert await racers[2].enter(spec, holder(next_in_line)) == "held"  # the first of them


async def test_a_job_holding_a_slot_takes_it_again_and_a_stale_slot_or_place_is_dropped(
    clean_nats: NATS,
) -> None:
    spec = JobSpec(run="true", concurrency=group(limit=1))
    now = time.time()
    [groups] = await started_groups(clean_nats, 1)
    assert await groups.enter(spec, holder(1, since=now)) == "held"
    assert await groups.enter(spec, holder(1, since=now)) == "held"  # a claim after a lost lease
    assert await groups.enter(spec, holder(2, since=now)) == "waiting"  # recent: wf-1 kept
    [later] = await started_groups(clean_nats, 1, clock=lambda: now + WAIT_STALE + STALE_AFTER)
    # wf-1 is listed for long and its job is not running (no event); wf-2 was not seen again.
    assert await later.enter(spec, holder(3, since=now + WAIT_STALE + STALE_AFTER)) == "held"


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


async def test_a_dispatch_entered_twice_keeps_its_one_slot_for_the_claim_that_won(
    clean_nats: NATS,
) -> None:
    """One dispatch delivered to two workers at once: both enter as the same job (one slot,
    taken over); the claim that loses finds the attempt running (``runs_elsewhere``) and does
    not give the slot back, so a third job still waits while the winner runs."""
    spec = JobSpec(run="true", concurrency=group(limit=1))
    key = spec.concurrency.group  # type: ignore[union-attr]
    first, second = await started_groups(clean_nats, 2)
    winner = holder(1).model_copy(update={"worker_id": "w-1"})
    loser = holder(1).model_copy(update={"worker_id": "w-2"})
    assert await first.enter(spec, winner) == "held"
    assert await second.enter(spec, loser) == "held"  # the same job: it takes the slot over
    running = updated(pending("wf-1", "j"), status=JobStatus.RUNNING, attempt=1, worker_id="w-1")
    assert runs_elsewhere(running, attempt=1)  # what the loser's refused claim finds
    assert await second.enter(spec, holder(2)) == "waiting"  # the slot is still taken
    await first.leave(key, winner)  # the winner's result: the slot is free again
    assert await second.enter(spec, holder(2)) == "held"


def test_a_refused_claim_gives_its_slot_back_unless_the_attempt_runs() -> None:
    queued = updated(pending("wf-1", "j"), status=JobStatus.QUEUED, attempt=2)
    assert not runs_elsewhere(None, attempt=1)
    assert not runs_elsewhere(queued, attempt=2)  # refused for another reason: nobody runs it
    assert not runs_elsewhere(updated(queued, status=JobStatus.RUNNING), attempt=1)  # a newer one
    assert not runs_elsewhere(updated(queued, status=JobStatus.SUCCEEDED), attempt=2)
    assert runs_elsewhere(updated(queued, status=JobStatus.RUNNING), attempt=2)
