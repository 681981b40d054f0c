"""Issue 7, fault 4 with the real processes: the nats-server is killed and started again under them.

``jetwork server --nats`` (engine and projector) and two ``jetwork worker`` processes run chains
of shell jobs on a single-node server with file storage (``sync_interval: always``). The server is
SIGKILLed mid-run and started again on the same port and store a moment later; nothing restarts
or reconnects the jetwork processes by hand. Every workflow must finish exactly as its chain says
(the log checker of ``tests/invariants.py``), the projections must list every one as succeeded
(the projector came back too), and every jetwork process must still be running. A third
workflow holds durable timers across the outage: a delayed job and a retry waiting out its backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.connection import NatsSettings, connect
from events.dead_letters import list_dead_letters
from events.store import EventStore
from events.topology import ensure_topology
from sdk.client import Client
from sdk.embedded_server import EmbeddedServer
from tests.chaos_processes import Managed, clean_env, jetwork
from tests.eventually import assert_eventually
from tests.invariants import check_log

pytestmark = pytest.mark.slow

WORKFLOWS = 6
CHAIN = 5
DOWN_FOR = 2.0


def chain_of_sleeps(length: int) -> dict[str, object]:
    jobs: dict[str, object] = {}
    for i in range(length):
        jobs[f"j{i}"] = {"run": "sleep 0.2", **({"needs": [f"j{i - 1}"]} if i else {})}
    return {"name": "sleepy-chain", "jobs": jobs}


def waiting_on_timers(marker: Path) -> dict[str, object]:
    """A delayed job, and a job that fails once and is retried after a 3 s backoff."""
    flaky = f"test -f {marker} || {{ touch {marker}; exit 1; }}"
    return {
        "name": "timers",
        "jobs": {
            "later": {"run": "true", "delay": "4s"},
            "flaky": {
                "run": flaky,
                "retry": {"max_attempts": 2, "backoff": "fixed", "delay": "3s"},
            },
        },
    }


@dataclass
class Deployment:
    server: EmbeddedServer
    processes: list[Managed]
    nc: NATS

    def restart_server(self) -> None:
        """SIGKILL the server, then start it on the same port and store after ``DOWN_FOR``."""
        self.server.kill()
        self.server = EmbeddedServer(
            data_dir=self.server.data_dir,
            port=self.server.port,
            sync_interval=self.server.sync_interval,
        )

    def assert_all_running(self) -> None:
        for process in self.processes:
            process.note_exit()
            assert process.alive, f"{process.name} exited: {process.log.read_text()[-3000:]}"


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="always").start()
    env = clean_env()
    worker_flags = ("-c", "4", "--lease-ttl", "5s", "--heartbeat", "1s", "--poll-interval", "250ms")
    processes = [
        Managed(
            "server",
            lambda _: jetwork("server", "--no-http", "--nats", server.url),
            env,
            tmp_path / "server.log",
        ),
        *(
            Managed(
                f"worker-{i}",
                lambda _, i=i: jetwork(
                    "worker", "--nats", server.url, "--id", f"w{i}", *worker_flags
                ),
                env,
                tmp_path / f"worker-{i}.log",
            )
            for i in range(2)
        ),
    ]
    for process in processes:
        process.start()
    nc = await connect(NatsSettings(url=server.url, name="restart-driver"))
    await ensure_topology(nc.jetstream())  # as every jetwork process does at start-up
    dep = Deployment(server, processes, nc)
    try:
        yield dep
    finally:
        for process in processes:
            process.stop()
        await nc.close()
        dep.server.stop()


async def succeeded_jobs(store: EventStore) -> int:
    return len(await store.read_raw(subjects.events_of_type("JobSucceeded")))


async def test_every_process_rides_out_a_killed_server_and_every_workflow_finishes(
    deployment: Deployment, tmp_path: Path
) -> None:
    dep = deployment
    client, store = Client(dep.nc), EventStore(dep.nc)
    ids = [
        (await client.start(chain_of_sleeps(CHAIN), idempotency_key=f"restart-{n}")).workflow_id
        for n in range(WORKFLOWS)
    ]
    timers = (await client.start(waiting_on_timers(tmp_path / "flaky-ran-once"))).workflow_id

    async def mid_run() -> bool:
        retry_waiting = await store.read_raw(
            subjects.job_event(timers, "flaky", "JobRetryScheduled")
        )
        return bool(retry_waiting) and await succeeded_jobs(store) >= WORKFLOWS

    await assert_eventually(mid_run, timeout=60, message="no progress before the fault")
    done_before = await succeeded_jobs(store)
    dep.restart_server()
    await asyncio.sleep(DOWN_FOR)  # the outage itself, not a synchronisation
    dep.server.start()
    assert done_before < WORKFLOWS * CHAIN, "the fault must land mid-run"

    views = [await client.wait(wf, timeout=90) for wf in [*ids, timers]]
    assert [view.status for view in views] == ["succeeded"] * (WORKFLOWS + 1)
    assert views[-1].jobs["flaky"].attempts == 2
    report = await check_log(store)
    assert report.ok, report.summary()
    assert report.ends == {"succeeded": WORKFLOWS + 1}

    async def all_listed_succeeded() -> bool:
        rows = await client.list(limit=100)
        listed = sorted(row.workflow_id for row in rows if row.status == "succeeded")
        return listed == sorted([*ids, timers])

    await assert_eventually(all_listed_succeeded, timeout=30, message="projections lag behind")
    assert await list_dead_letters(dep.nc) == []
    dep.assert_all_running()
    print(
        f"\nserver SIGKILLed with {done_before}/{WORKFLOWS * CHAIN} jobs done\n{report.summary()}"
    )
