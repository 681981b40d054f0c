"""Issue 7, fault 4: the nats-server restarts under a running engine (single node, file storage).

The engine and the runner share one connection made by ``events.connection.connect`` (reconnect
forever after the first connect). The server is stopped mid-run and started again on the same port
and store directory; nothing in the test reconnects or rebinds anything by hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine
from events.catalog import JobRetryScheduled
from events.connection import NatsSettings, connect
from events.dead_letters import list_dead_letters
from events.errors import StoreError
from events.store import ActorRef, EventStore
from events.topology import ensure_topology
from sdk.embedded_server import EmbeddedServer
from tests.engine_harness import RecordingDispatcher, running_engine, start_workflow
from tests.eventually import assert_eventually
from tests.faults import (
    ResilientRunner,
    all_histories,
    assert_chain_history_is_exact,
    chain,
    longest_pause,
)

WORKFLOWS = 8
CHAIN = 6
JOBS = WORKFLOWS * CHAIN


@dataclass
class Rig:
    server: EmbeddedServer
    nc: NATS
    store: EventStore
    engine: Engine
    runner: ResilientRunner

    async def restart_server(self, *, kill: bool, down_for: float) -> float:
        """Stop (SIGTERM) or kill (SIGKILL) the server, start it on the same port and store."""
        if kill:
            self.server.kill()
        else:
            self.server.stop()
        await asyncio.sleep(down_for)  # the outage itself, not a synchronisation
        self.server = EmbeddedServer(
            data_dir=self.server.data_dir,
            port=self.server.port,
            sync_interval=self.server.sync_interval,
        ).start()
        return time.monotonic()


async def _rig(tmp_path: Path, sync_interval: str) -> AsyncIterator[Rig]:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval=sync_interval).start()
    nc = await connect(NatsSettings(url=server.url, name="restart-test"))
    await ensure_topology(nc.jetstream())
    store = EventStore(nc)
    dispatcher = RecordingDispatcher()
    engine = await running_engine(nc, dispatcher)
    runner = ResilientRunner(store, dispatcher, job_seconds=0.05).start()
    rig = Rig(server, nc, store, engine, runner)
    try:
        yield rig
    finally:
        await runner.stop()
        await engine.stop()
        await nc.close()
        rig.server.stop()


@pytest.fixture
async def rig_2m(tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in _rig(tmp_path, "2m"):
        yield rig


@pytest.fixture
async def rig_always(tmp_path: Path) -> AsyncIterator[Rig]:
    async for rig in _rig(tmp_path, "always"):
        yield rig


async def _restart_mid_run(rig: Rig, *, kill: bool, down_for: float) -> None:
    ids = [f"wf-restart-{n}" for n in range(WORKFLOWS)]
    for wf in ids:
        await start_workflow(rig.nc, wf, chain(CHAIN))
    await assert_eventually(
        lambda: len(rig.runner.finished_at) >= JOBS // 4, timeout=30, message="no progress"
    )
    done_before = len(rig.runner.finished_at)
    restarted_at = await rig.restart_server(kill=kill, down_for=down_for)
    assert done_before < JOBS, "the fault must land mid-run"

    histories = await assert_eventually(
        lambda: all_histories(rig.store, ids), timeout=60, interval=0.1
    )
    resumed = [t for t in rig.runner.finished_at if t > restarted_at]
    assert resumed, "no job finished after the restart"
    print(
        f"\n{'SIGKILL' if kill else 'SIGTERM'}, down {down_for}s: {done_before}/{JOBS} jobs done "
        f"before; after the restart the first job finished in {resumed[0] - restarted_at:.2f}s, "
        f"the longest pause between completions was "
        f"{longest_pause(rig.runner.finished_at, restarted_at):.2f}s, all done in "
        f"{max(rig.runner.finished_at) - restarted_at:.2f}s; runner retries "
        f"{rig.runner.redeliveries}"
    )
    for history in histories:
        assert_chain_history_is_exact(history, CHAIN)
    assert await list_dead_letters(rig.nc) == []


async def test_engine_survives_a_graceful_server_restart(rig_2m: Rig) -> None:
    # An operator's restart (an upgrade): SIGTERM flushes, the new server is up at once.
    await _restart_mid_run(rig_2m, kill=False, down_for=0)


async def test_engine_survives_a_killed_server_down_for_seconds(rig_always: Rig) -> None:
    # A crash, restarted by a supervisor after 6 s: longer than the store's request timeout (5 s),
    # so appends and reads in flight time out and are retried with the same msg ids; only what was
    # fsynced survives SIGKILL ("always": every acknowledged write was).
    await _restart_mid_run(rig_always, kill=True, down_for=6)


async def test_an_append_made_while_the_server_is_down_lands_once_when_it_is_back(
    tmp_path: Path,
) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="always").start()
    nc = await connect(NatsSettings(url=server.url, name="append-across-restart"))
    try:
        await ensure_topology(nc.jetstream())
        store = EventStore(nc)
        actor = ActorRef.job("wf-outage", "a")
        server.stop()
        append = asyncio.create_task(
            store.append(actor, [_retry_event()], expected_seq=0, command_id="across-restart")
        )
        await asyncio.sleep(1.0)  # the outage itself
        assert not append.done()
        server = EmbeddedServer(
            data_dir=server.data_dir, port=server.port, sync_interval="always"
        ).start()
        seq = await asyncio.wait_for(append, 30)
        assert [r.seq for r in await store.load(actor)] == [seq]
    finally:
        await nc.close()
        server.stop()


async def test_an_append_no_stream_takes_is_reported_as_retryable(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="2m").start()
    nc = await connect(NatsSettings(url=server.url, name="no-topology"))
    try:
        store = EventStore(nc, patience=1.0)  # no topology created: nobody answers evt.>
        started = time.monotonic()
        with pytest.raises(StoreError, match="no JetStream stream answers") as caught:
            await store.append(
                ActorRef.job("wf-outage", "a"), [_retry_event()], expected_seq=0, command_id="c"
            )
        assert caught.value.retryable
        assert "ensure_topology" in str(caught.value)
        assert 1.0 <= time.monotonic() - started < 10
    finally:
        await nc.close()
        server.stop()


def _retry_event() -> JobRetryScheduled:
    return JobRetryScheduled(
        workflow_id="wf-outage", job="a", attempt=2, delay=1.0, not_before=datetime.now(UTC)
    )
