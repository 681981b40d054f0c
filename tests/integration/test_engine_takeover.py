"""Issue 11, scale-out: engine processes share the partitions, take over and fence themselves.

Real processes on the repo's 3-node cluster (R3 streams, ``tests/cluster.py``): engines are
``jetwork server --no-http --no-projector`` and two ``jetwork worker`` processes run chains of
shell jobs. ``tests/leases.py`` follows KV ``jw_partitions`` from before the first engine starts,
so every test knows who owned which partition when (server timestamps) and when the test saw it
(its monotonic clock). Every test ends with the same checks: every workflow ended as its chain
says (``tests/invariants.py``), and no engine append landed on a partition while the KV named
another owner (``leases.outside_lease``: an engine's events carry its id in their msg ids).

1. Rebalance: one engine holds all 16 partitions; a second one started takes 8; stopped with
   SIGTERM it gives them back.
2. SIGKILL: the survivor holds the dead engine's partitions within the lease (its 4 s default,
   plus one renewal interval) after the kill, and every workflow finishes.
3. SIGSTOP: an engine frozen past its lease loses its partitions; resumed, it appends nothing
   until it has legitimately taken partitions again (fencing), then works again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.connection import NatsSettings, connect
from events.dead_letters import list_dead_letters
from events.store import EventStore
from events.topology import Topology, ensure_topology
from sdk.client import Client
from tests.chaos_processes import Managed, clean_env, jetwork
from tests.cluster import LocalCluster
from tests.eventually import assert_eventually
from tests.invariants import check_log
from tests.leases import LeaseChange, LeaseWatch, outside_lease, writer_of

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

ALL = set(range(subjects.PARTITIONS))
RENEW_EVERY = 1.0  # EngineSettings.renew_every: not an environment setting
SHORT_LEASE = 2.0
CLOCK_SLACK = 0.05  # lease writes and takeovers compared on server timestamps (one host)


def chain(length: int, seconds: float = 0.2) -> dict[str, object]:
    jobs: dict[str, object] = {}
    for i in range(length):
        jobs[f"j{i}"] = {"run": f"sleep {seconds}", **({"needs": [f"j{i - 1}"]} if i else {})}
    return {"name": "takeover-chain", "jobs": jobs}


@dataclass
class Deployment:
    cluster: LocalCluster
    nc: NATS
    directory: Path
    watch: LeaseWatch
    processes: dict[str, Managed] = field(default_factory=dict)
    submitted: list[str] = field(default_factory=list)
    client: Client = field(init=False)
    store: EventStore = field(init=False)

    def __post_init__(self) -> None:
        self.client, self.store = Client(self.nc), EventStore(self.nc)

    def start_workers(self, count: int = 2) -> None:
        flags = ("-c", "4", "--lease-ttl", "5s", "--heartbeat", "1s", "--poll-interval", "250ms")
        for n in range(count):
            name = f"worker-{n}"
            command = jetwork("worker", "--nats", self.cluster.url, "--id", f"w{n}", *flags)
            self._start(Managed(name, lambda _, c=command: c, clean_env(), self._log(name)))

    async def start_engine(self, name: str, *, lease_ttl: float) -> str:
        """Start an engine process; its id, once its presence is in the KV."""
        known = set(self.watch.presence)
        env = clean_env(JETWORK_ENGINE_LEASE_TTL=f"{lease_ttl:g}")
        command = jetwork("server", "--no-http", "--no-projector", "--nats", self.cluster.url)
        process = self._start(Managed(name, lambda _: command, env, self._log(name)))

        def new_engine() -> str | None:
            process.note_exit()
            assert process.alive, f"{name} exited:\n{process.tail(40)}"
            fresh = set(self.watch.presence) - known
            return fresh.pop() if fresh else None

        return await assert_eventually(new_engine, timeout=30, message=f"{name} never came up")

    def stop_gracefully(self, name: str) -> None:
        """One SIGTERM (a second one would force the stop), as a service manager sends it."""
        process = self.processes[name]
        assert process.pid is not None
        os.kill(process.pid, signal.SIGTERM)

    async def exit_code(self, name: str) -> int:
        process = self.processes[name]
        await assert_eventually(lambda: not process.alive, timeout=20, message=f"{name} runs on")
        process.note_exit()
        return process.unexpected_exits[-1]

    async def submit(self, count: int, definition: dict[str, object]) -> list[str]:
        ids = [(await self.client.start(definition)).workflow_id for _ in range(count)]
        self.submitted += ids
        return ids

    async def all_finish(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for wf in self.submitted:
            view = await self.client.wait(wf, timeout=max(1.0, deadline - time.monotonic()))
            assert view.status == "succeeded", f"{wf}: {view.status}"

    async def assert_log_is_clean(self, engines: list[str]) -> None:
        """Every workflow ended as its chain says; every engine append was under its lease."""
        report = await check_log(self.store, expected=self.submitted)
        assert report.ok, report.summary()
        assert report.ends == {"succeeded": len(self.submitted)}
        messages = await self.store.read_raw(subjects.EVENTS_ALL)
        assert outside_lease(messages, self.watch, engines) == []
        assert await list_dead_letters(self.nc) == []

    def _start(self, process: Managed) -> Managed:
        self.processes[process.name] = process
        process.start()
        return process

    def _log(self, name: str) -> Path:
        return self.directory / f"{name}.log"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # tests/cluster.py picks the free ports one by one, so two can collide (a node then exits at
    # once): start again on other ports, as tests/chaos.py does.
    for attempt in range(1, 4):
        running = LocalCluster(tmp_path / f"cluster-{attempt}", sync_interval="2m")
        try:
            running.start()
            break
        except RuntimeError:
            running.stop()
            if attempt == 3:
                raise
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def deployment(cluster: LocalCluster, tmp_path: Path) -> AsyncIterator[Deployment]:
    nc = await connect(NatsSettings(url=cluster.url, name="takeover-driver"))
    watch: LeaseWatch | None = None
    dep: Deployment | None = None
    try:
        await ensure_topology(nc.jetstream(), Topology(replicas=3))
        watch = await LeaseWatch.start(nc)
        dep = Deployment(cluster, nc, tmp_path, watch)
        yield dep
    finally:
        if dep is not None:
            for process in dep.processes.values():
                process.resume()
                process.stop()
        if watch is not None:
            await watch.stop()
        await nc.close()


async def until(
    probe: Callable[[], Any], *, timeout: float, message: str, interval: float = 0.01
) -> None:
    """Poll the lease watch often (the tests time what they see); reads of the log less so."""
    await assert_eventually(probe, timeout=timeout, interval=interval, message=message)


async def jobs_done(store: EventStore) -> int:
    return len(await store.read_raw(subjects.events_of_type("JobSucceeded")))


# --- 1. rebalance ------------------------------------------------------------------------------


async def test_a_new_engine_takes_half_and_a_stopped_one_gives_them_back(
    deployment: Deployment,
) -> None:
    dep = deployment
    a = await dep.start_engine("engine-a", lease_ttl=SHORT_LEASE)
    await until(lambda: dep.watch.share() == {a: 16}, timeout=20, message="A alone holds all")
    dep.start_workers()
    await dep.submit(16, chain(10))  # in flight through both moves
    await until(lambda: jobs_done(dep.store), timeout=30, message="no progress", interval=0.1)

    started = time.monotonic()
    b = await dep.start_engine("engine-b", lease_ttl=SHORT_LEASE)
    await until(lambda: dep.watch.share() == {a: 8, b: 8}, timeout=20, message="no even split")
    split_after = time.monotonic() - started
    await dep.submit(8, chain(4))  # and some started while both share the partitions
    await until(
        lambda: _appended_by(dep.store, b), timeout=20, message="B decides nothing", interval=0.1
    )

    stopping = time.monotonic()
    dep.stop_gracefully("engine-b")
    await until(lambda: dep.watch.share() == {a: 16}, timeout=20, message="B's half not back")
    back_after = time.monotonic() - stopping
    assert await dep.exit_code("engine-b") == 0

    await dep.all_finish()
    await dep.assert_log_is_clean([a, b])
    print(f"\nB started: 8/8 after {split_after:.2f}s; B SIGTERMed: A 16 after {back_after:.2f}s")


# --- 2. SIGKILL --------------------------------------------------------------------------------


async def test_a_killed_engine_s_partitions_move_within_the_lease_and_every_workflow_finishes(
    deployment: Deployment,
) -> None:
    dep = deployment
    lease_ttl = 4.0  # the default: the "within the ownership lease (<= 5 s)"
    a = await dep.start_engine("engine-a", lease_ttl=lease_ttl)
    await until(lambda: dep.watch.share() == {a: 16}, timeout=20, message="A alone holds all")
    b = await dep.start_engine("engine-b", lease_ttl=lease_ttl)
    await until(lambda: dep.watch.share() == {a: 8, b: 8}, timeout=20, message="no even split")
    b_partitions = dep.watch.held_by(b)
    dep.start_workers()
    ids = await dep.submit(16, chain(10))
    on_b = [wf for wf in ids if subjects.partition_of(wf) in b_partitions]
    assert on_b, "some workflows must be B's"
    await until(lambda: _at_least(dep.store, 16), timeout=30, message="no progress", interval=0.1)

    dep.processes["engine-b"].kill()
    killed_at = time.monotonic()
    await until(lambda: dep.watch.held_by(a) == ALL, timeout=20, message="B's partitions stay")
    taken = dep.watch.taken_from(b, b_partitions, by=a)
    assert {change.partition for change in taken} == b_partitions
    handovers = sorted(change.seen - killed_at for change in taken)
    # A sees B's last renewal expired lease_ttl after it saw it (before the kill), and takes the
    # partition at its next cycle: lease_ttl + renew_every at most, plus scheduling slack.
    assert handovers[-1] <= lease_ttl + RENEW_EVERY + 1.0, handovers
    waits = dep.watch.lease_waits(taken)  # and never before B's lease ran out
    assert waits[0] >= lease_ttl - CLOCK_SLACK, waits

    await dep.all_finish()
    await dep.assert_log_is_clean([a, b])
    ended_by_a = await _ended_by(dep.store, on_b, a)
    assert ended_by_a, "A must have finished some of B's workflows"
    print(
        f"\nB SIGKILLed with {len(on_b)} workflows on its partitions; A held its 8 partitions "
        f"{handovers[0]:.2f}-{handovers[-1]:.2f}s after the kill ({waits[0]:.2f}-{waits[-1]:.2f}s "
        f"after B's last renewal); {len(ended_by_a)} ended by A"
    )


# --- 3. SIGSTOP --------------------------------------------------------------------------------


async def test_an_engine_frozen_past_its_lease_appends_nothing_until_it_owns_partitions_again(
    deployment: Deployment,
) -> None:
    dep = deployment
    a = await dep.start_engine("engine-a", lease_ttl=SHORT_LEASE)
    await until(lambda: dep.watch.share() == {a: 16}, timeout=20, message="A alone holds all")
    b = await dep.start_engine("engine-b", lease_ttl=SHORT_LEASE)
    await until(lambda: dep.watch.share() == {a: 8, b: 8}, timeout=20, message="no even split")
    b_partitions = dep.watch.held_by(b)
    dep.start_workers()
    ids = await dep.submit(16, chain(8))
    await until(lambda: _at_least(dep.store, 16), timeout=30, message="no progress", interval=0.1)

    # Freeze B while it is busy: starts arrive all the time, each decided in two stages.
    enough = asyncio.Event()
    feeding = asyncio.create_task(_feed(dep, chain(1, seconds=0), enough))
    await until(lambda: _busy(dep, b), timeout=10, message="B never busy", interval=0.02)
    dep.processes["engine-b"].pause()
    paused_at = time.monotonic()
    enough.set()
    await feeding
    await until(lambda: dep.watch.held_by(a) == ALL, timeout=20, message="B's partitions stay")
    taken = dep.watch.taken_from(b, b_partitions, by=a)
    assert {change.partition for change in taken} == b_partitions
    taken_at = max(change.at for change in taken)
    waits = dep.watch.lease_waits(taken)
    assert waits[0] >= SHORT_LEASE - CLOCK_SLACK, waits

    # Work moves on without B: A appends for B's partitions.
    assert any(subjects.partition_of(wf) in b_partitions for wf in ids), "B must have work"

    async def a_took_up_b_s_work() -> bool:
        queued = await dep.store.read_raw(subjects.events_of_type("JobQueued"))
        return any(
            writer_of(m, [a]) and int(m.subject.split(".")[1]) in b_partitions and m.time > taken_at
            for m in queued
        )

    await until(a_took_up_b_s_work, timeout=30, message="A does none of B's work", interval=0.1)

    dep.processes["engine-b"].resume()
    resumed_at = time.monotonic()
    await until(lambda: dep.watch.share() == {a: 8, b: 8}, timeout=20, message="B gets no share")
    back = min((c for c in dep.watch.changes if c.owner == b and c.at > taken_at), key=_at)
    back_at = back.at
    await dep.submit(16, chain(3))  # a second wave, shared by both again
    await dep.all_finish()

    messages = await dep.store.read_raw(subjects.EVENTS_ALL)
    late = [m for m in messages if writer_of(m, [b]) and taken_at < m.time < back_at]
    # The times say which gap a late append fell into (the server's clock for every one).
    assert late == [], (
        [f"#{m.seq} {m.subject} {m.time}" for m in late],
        f"A took B's partitions at {taken_at}, B held one again at {back_at}",
    )
    assert any(writer_of(m, [b]) and m.time > back_at for m in messages), "B never worked again"
    await dep.assert_log_is_clean([a, b])
    lost_after = max(change.seen for change in taken) - paused_at
    print(
        f"\nB SIGSTOPped: A held its 8 partitions {lost_after:.2f}s later; B SIGCONTed after "
        f"{resumed_at - paused_at:.2f}s, held a partition again {back.seen - resumed_at:.2f}s "
        "later, appending nothing in between"
    )


# --- helpers ---------------------------------------------------------------------------------


def _at(change: LeaseChange) -> datetime:
    return change.at


async def _at_least(store: EventStore, jobs: int) -> bool:
    return await jobs_done(store) >= jobs


async def _appended_by(store: EventStore, engine: str) -> bool:
    queued = await store.read_raw(subjects.events_of_type("JobQueued"))
    return any(writer_of(m, [engine]) for m in queued)


async def _ended_by(store: EventStore, workflows: list[str], engine: str) -> list[str]:
    ends = await store.read_raw(subjects.events_of_type("WorkflowSucceeded"))
    mine = {m.subject.split(".")[2] for m in ends if writer_of(m, [engine])}
    return [wf for wf in workflows if wf in mine]


async def _feed(dep: Deployment, definition: dict[str, object], enough: asyncio.Event) -> None:
    while not enough.is_set():
        await dep.submit(4, definition)
        await asyncio.sleep(0.01)  # a steady stream, not a synchronisation


async def _busy(dep: Deployment, engine: str) -> bool:
    """``engine`` appended a moment ago (its newest append is among the last few)."""
    info = await dep.nc.jetstream().stream_info(subjects.EVENTS_STREAM)
    last = info.state.last_seq
    recent = await dep.store.read_raw(subjects.EVENTS_ALL, from_seq=max(1, last - 5))
    return any(writer_of(m, [engine]) for m in recent)
