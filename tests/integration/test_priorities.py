"""Priorities on a real nats-server: when slots are scarce, queued jobs start highest priority
first, in the order they were queued within a priority; through the engine, a workflow's, a job's
and a start's priority reach the dispatch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from actors.engine import Engine, EngineSettings
from events import subjects
from events.catalog import JobQueued, JobStarted, JobSucceeded
from events.dispatch import LabelSet
from events.store import ActorRef, EventStore
from sdk import Client
from sdk.worker import Worker
from tests.claims import claim_records
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running

# (job, priority) in the order they are queued; None is the default (5).
MIXED: list[tuple[str, int | None]] = [
    ("low1", 1),
    ("mid1", 5),
    ("top1", 10),
    ("none1", None),
    ("top2", 10),
    ("low2", 1),
    ("seven", 7),
    ("mid2", 5),
    ("top3", 10),
    ("two", 2),
]


def expected_order(queued: list[tuple[str, int | None]]) -> list[str]:
    """Highest first; the queue order within a priority (sorted() is stable)."""
    return [job for job, p in sorted(queued, key=lambda item: -(item[1] or 5))]


async def consumers_exist(nc: NATS, labelsets: list[LabelSet]) -> bool:
    js = nc.jetstream()
    for labelset in labelsets:
        try:
            await js.consumer_info(subjects.EVENTS_STREAM, labelset.consumer)
        except NotFoundError:
            raise AssertionError(f"no consumer yet for {labelset.route}") from None
    return True


async def start_order(harness: JobsHarness, wf: str, jobs: list[str]) -> list[str]:
    starts: list[tuple[int, str]] = []
    for job in jobs:
        recorded = await harness.store.load(ActorRef.job(wf, job))
        seqs = [seq for seq, _ in claim_records(recorded)]
        assert seqs, f"{job} has not started"
        assert any(isinstance(r.event, JobSucceeded) for r in recorded), f"{job} not done"
        starts.append((seqs[0], job))
    return [job for _, job in sorted(starts)]


async def test_one_free_slot_takes_the_highest_priority_first_and_fifo_within_one(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    label = f"prio-{uuid.uuid4().hex[:8]}"
    gate = tmp_path / "open"
    worker = Worker(fast_config(nats_url, labels=frozenset([label]), max_concurrent_jobs=1))
    async with running(worker):
        # The one slot is taken until the test opens the gate.
        await harness.queue(
            "wf", "blocker", run=f"until [ -e {gate} ]; do sleep 0.02; done", labels=[label]
        )

        async def blocker_running() -> bool:
            return bool(await harness.events("wf", "blocker", JobStarted))

        await assert_eventually(blocker_running, timeout=15)
        for job, priority in MIXED:
            await harness.queue("wf", job, run="true", labels=[label], priority=priority)
        levels = {1, 2, 7, 10}
        labelsets = [LabelSet.of([label])] + [LabelSet.of([label], level=p) for p in levels]
        await assert_eventually(lambda: consumers_exist(harness.nc, labelsets), timeout=15)
        gate.touch()

        jobs = [job for job, _ in MIXED]
        order = await assert_eventually(
            lambda: start_order(harness, "wf", jobs), timeout=30, interval=0.1
        )
    assert order == expected_order(MIXED)


async def test_two_busy_workers_freed_together_take_the_high_jobs_before_the_low(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    """Two workers race: each takes the highest level it sees, so the high jobs start first,
    give or take the jobs in flight between the two (a dispatch a busy worker was sent and
    releases is invisible to the other meanwhile): at most one per worker."""
    label, workers = f"prio2-{uuid.uuid4().hex[:8]}", 2
    gate = tmp_path / "open"
    config = {"labels": frozenset([label]), "max_concurrent_jobs": 1}
    pair = [Worker(fast_config(nats_url, **config)) for _ in range(workers)]
    async with running(*pair):
        blockers = [f"blocker{n}" for n in range(workers)]
        for blocker in blockers:
            wait = f"until [ -e {gate} ]; do sleep 0.02; done"
            await harness.queue("wf", blocker, run=wait, labels=[label])

        async def all_blocked() -> bool:
            return all([await harness.events("wf", b, JobStarted) for b in blockers])

        await assert_eventually(all_blocked, timeout=15)
        queued = [(f"low{n}", 1) for n in range(6)] + [(f"high{n}", 10) for n in range(6)]
        for job, priority in queued:
            await harness.queue("wf", job, run="true", labels=[label], priority=priority)
        labelsets = [LabelSet.of([label], level=p) for p in (1, 10)]
        await assert_eventually(lambda: consumers_exist(harness.nc, labelsets), timeout=15)
        gate.touch()
        jobs = [job for job, _ in queued]
        order = await assert_eventually(
            lambda: start_order(harness, "wf", jobs), timeout=30, interval=0.1
        )
    first_low = next(index for index, job in enumerate(order) if job.startswith("low"))
    assert first_low >= 6 - workers, order


async def test_jobs_queued_at_one_priority_keep_the_label_sets_own_consumer(
    harness: JobsHarness,
) -> None:
    default = await harness.queue("wf", "plain", run="true", labels=["gpu"])
    explicit = await harness.queue("wf", "five", run="true", labels=["gpu"], priority=5)
    high = await harness.queue("wf", "nine", run="true", labels=["gpu"], priority=9)
    assert default.subject() == explicit.subject().replace("five", "plain")
    assert default.subject().endswith(".JobQueued.gpu")
    assert high.subject().endswith(".JobQueued.gpu.p9")
    kv = await harness.nc.jetstream().key_value(subjects.KV_LABELSETS)
    keys = set(await kv.keys())
    assert keys == {LabelSet.of(["gpu"]).consumer, LabelSet.of(["gpu"], level=9).consumer}
    entry = await kv.get(LabelSet.of(["gpu"], level=9).consumer)
    assert LabelSet.decode(entry.value or b"") == LabelSet.of(["gpu"], level=9)


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running_engine = Engine(clean_nats, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    await running_engine.start()
    yield running_engine
    await running_engine.stop()


async def test_workflow_job_and_start_priorities_reach_the_dispatch(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    definition = {
        "name": "ranked",
        "priority": 3,
        "jobs": {
            "inherits": {"run": "true"},
            "own": {"run": "true", "priority": 8},
        },
    }
    store = EventStore(clean_nats)
    async with Client.connect(nats_url) as client, running(Worker(fast_config(nats_url))):
        plain = await client.start(definition)
        urgent = await client.start(definition, priority=10)
        for handle in (plain, urgent):
            assert (await handle.wait(timeout=30)).status == "succeeded"
        queued = {
            (wf, r.event.job): (r.event.spec.priority, r.subject)
            for wf in (plain.workflow_id, urgent.workflow_id)
            for r in await store.history(wf)
            if isinstance(r.event, JobQueued)
        }
    assert queued[(plain.workflow_id, "inherits")][0] == 3
    assert queued[(plain.workflow_id, "inherits")][1].endswith(".JobQueued.~.p3")
    assert queued[(plain.workflow_id, "own")][0] == 8
    assert queued[(urgent.workflow_id, "inherits")][0] == 10  # the start's replaces the workflow's
    assert queued[(urgent.workflow_id, "own")][0] == 8  # a job's own wins


async def test_a_start_priority_out_of_range_is_refused_before_sending(nats_url: str) -> None:
    from sdk.errors import InvalidArgument

    async with Client.connect(nats_url) as client:
        with pytest.raises(InvalidArgument, match="priority must be a whole number from 1"):
            await client.start({"name": "x", "jobs": {"a": {"run": "true"}}}, priority=11)


async def test_a_gateway_claim_takes_the_highest_level_holding_a_dispatch(
    clean_nats: NATS,
) -> None:
    from gateway.pulling import OneShotPuller

    base = LabelSet.of(["gw-prio"])
    levels = [base, LabelSet.of(["gw-prio"], level=2), LabelSet.of(["gw-prio"], level=9)]
    js = clean_nats.jetstream()
    # Queued low first: stream order is the opposite of priority order.
    for n, labelset in enumerate([levels[1], levels[1], levels[0], levels[2], levels[2]]):
        suffix = labelset.route.removeprefix(base.token)
        await js.publish(f"evt.0.wf{n}.job.j.JobQueued.{base.token}{suffix}", str(n).encode())
    puller = OneShotPuller(clean_nats, consumer_lease=30, often=0.0)  # nothing kept at hand
    got = []
    try:
        for _ in range(5):
            pulled = await puller.pull_one(levels, wait=0)
            assert pulled is not None
            got.append(int(pulled.msg.data))
            await pulled.msg.ack()
        assert await puller.pull_one(levels, wait=0) is None
    finally:
        await puller.stop()
    assert got == [3, 4, 2, 0, 1]


async def test_an_http_start_sets_the_runs_priority_and_a_bad_one_is_a_422(
    clean_nats: NATS, nats_url: str
) -> None:
    import httpx

    from tests.gateway_harness import running_engine, running_gateway

    workflow = {"name": "over-http", "jobs": {"a": {"run": "true", "labels": ["http"]}}}
    store = EventStore(clean_nats)
    async with (
        running_engine(clean_nats),
        running_gateway(nats_url) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        started = await http.post("/api/workflows", json={"workflow": workflow, "priority": 9})
        assert started.status_code == 201, started.text
        wf = started.json()["workflow_id"]

        async def queued() -> JobQueued | None:
            found = [r.event for r in await store.history(wf) if isinstance(r.event, JobQueued)]
            return found[0] if found else None

        event = await assert_eventually(queued, timeout=15)
        assert event.spec.priority == 9 and event.route == "http.p9"
        for body in ({"priority": 0}, {"priority": "9"}, {"priority": 11}):
            refused = await http.post("/api/workflows", json={"workflow": workflow, **body})
            assert refused.status_code == 422, refused.text
            assert "priority" in refused.text
        yaml = await http.post(
            "/api/workflows?priority=high",
            content="name: y\njobs:\n  a: {run: 'true'}\n",
            headers={"Content-Type": "text/yaml"},
        )
        assert yaml.status_code == 422 and "priority must be a number" in yaml.text
