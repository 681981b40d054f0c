"""Issue 7, fault 5: a 3-node JetStream cluster (R3 streams) loses the leader of the event stream.

The cluster is the repo's own ``nats/cluster/node*.conf`` on free ports (``tests/cluster.py``).
Clients are given all three URLs, as ``JETWORK_NATS_URL`` would hold them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import JobRetryScheduled
from events.connection import NatsSettings, connect
from events.dead_letters import list_dead_letters
from events.errors import ConcurrencyConflict
from events.store import ActorRef, EventStore
from events.topology import Topology, ensure_topology
from tests.cluster import LocalCluster
from tests.engine_harness import RecordingDispatcher, running_engine, start_workflow
from tests.eventually import assert_eventually
from tests.faults import (
    ResilientRunner,
    all_histories,
    assert_chain_history_is_exact,
    chain,
    longest_pause,
)

pytestmark = pytest.mark.cluster

WORKFLOWS = 8
CHAIN = 6
JOBS = WORKFLOWS * CHAIN


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path) as running:
        yield running


@pytest.fixture
async def cluster_nc(cluster: LocalCluster) -> AsyncIterator[NATS]:
    nc = await connect(NatsSettings(url=cluster.url, name="cluster-test"))
    try:  # closed even when the set-up fails: a client left reconnecting hangs the session
        await ensure_topology(nc.jetstream(), Topology(replicas=3))
        yield nc
    finally:
        await nc.close()


async def _leader(nc: NATS, stream: str = subjects.EVENTS_STREAM) -> str | None:
    try:
        info = await nc.jetstream(timeout=0.5).stream_info(stream)
    except Exception:  # no leader to answer right now
        return None
    return info.cluster.leader if info.cluster else None


async def _connect_to(cluster: LocalCluster, name: str) -> NATS:
    """A client given every URL (as in production) that happens to be connected to ``name``."""
    port = cluster.node(name).port
    for _ in range(40):  # the server pool is shuffled: (2/3)^40 is nil
        nc = await connect(NatsSettings(url=cluster.url, name=f"on-{name}"))
        if nc.connected_url is not None and nc.connected_url.port == port:
            return nc
        await nc.close()
    raise AssertionError(f"never connected to {name}")


async def test_killing_the_event_stream_leader_mid_run_loses_nothing(
    cluster: LocalCluster, cluster_nc: NATS
) -> None:
    leader = await _leader(cluster_nc)
    assert leader is not None
    # The engine sits on the node that will die (it must fail over its connection as well); the
    # runner sits on another node and only sees the stream's leader move.
    engine_nc = await _connect_to(cluster, leader)
    runner_nc = await _connect_to(cluster, next(n.name for n in cluster.nodes if n.name != leader))
    dispatcher = RecordingDispatcher()
    engine = await running_engine(engine_nc, dispatcher)
    runner = ResilientRunner(EventStore(runner_nc), dispatcher, job_seconds=0.05).start()
    store = EventStore(cluster_nc)
    ids = [f"wf-cluster-{n}" for n in range(WORKFLOWS)]
    try:
        for wf in ids:
            await start_workflow(cluster_nc, wf, chain(CHAIN))
        await assert_eventually(
            lambda: len(runner.finished_at) >= JOBS // 4, timeout=60, message="no progress"
        )
        done_before = len(runner.finished_at)
        cluster.node(leader).kill()
        killed_at = time.monotonic()
        assert done_before < JOBS, "the fault must land mid-run"

        async def new_leader() -> str | None:
            current = await _leader(cluster_nc)
            return current if current not in (None, leader) else None

        elected = await assert_eventually(new_leader, timeout=60, interval=0.05)
        elected_at = time.monotonic()

        try:
            histories = await assert_eventually(
                lambda: all_histories(store, ids), timeout=90, interval=0.1
            )
        except AssertionError:
            print("\nrunner trouble:", *runner.trouble[-20:], sep="\n  ")
            print("dispatched:", [(d.workflow_id, d.job) for d in dispatcher.seen][-30:])
            raise
    finally:
        await runner.stop()
        await engine.stop()
        await engine_nc.close()
        await runner_nc.close()
    assert any(t > elected_at for t in runner.finished_at), "no job finished after the election"
    print(
        f"\nleader {leader} killed with {done_before}/{JOBS} jobs done; {elected} elected after "
        f"{elected_at - killed_at:.2f}s; longest pause between two job completions "
        f"{longest_pause(runner.finished_at, killed_at):.2f}s; all done "
        f"{max(runner.finished_at) - killed_at:.2f}s after the kill; runner retries "
        f"{runner.redeliveries}"
    )
    for history in histories:
        assert_chain_history_is_exact(history, CHAIN)
    assert await list_dead_letters(cluster_nc) == []

    # The dead node comes back and catches up: all three replicas hold the same log again.
    killed = cluster.node(leader)
    killed.start()
    cluster.wait_healthy([killed])

    async def replicas_current() -> bool:
        info = await cluster_nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        peers = info.cluster.replicas or [] if info.cluster else []
        return len(peers) == 2 and all(peer.current and not peer.offline for peer in peers)

    await assert_eventually(replicas_current, timeout=60, interval=0.1)


async def test_a_lost_race_on_a_replicated_stream_is_a_conflict(cluster_nc: NATS) -> None:
    """Racing appends to one actor on R3: one wins, the others see ``ConcurrencyConflict``.

    Sent concurrently, the losers are refused while the winner is still being replicated, which
    a clustered stream answers with 10164 (no sequence); later ones get 10071.
    """
    store = EventStore(cluster_nc)
    actor = ActorRef.job("wf-race-r3", "a")
    event = JobRetryScheduled(
        workflow_id="wf-race-r3", job="a", attempt=2, delay=1.0, not_before=datetime.now(UTC)
    )

    async def attempt(n: int) -> int | ConcurrencyConflict:
        try:
            return await store.append(actor, [event], expected_seq=0, command_id=f"racer-{n}")
        except ConcurrencyConflict as conflict:
            return conflict

    results = await asyncio.gather(*(attempt(n) for n in range(8)))
    won = [r for r in results if isinstance(r, int)]
    lost = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(won) == 1
    assert len(lost) == 7
    assert {c.actual_seq for c in lost} <= {None, won[0]}
    assert len(await store.load(actor)) == 1
