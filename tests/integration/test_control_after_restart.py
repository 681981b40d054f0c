"""Pauses, rate limits and label sets changed after a nats-server restart reach a worker, and a
gateway, that lived through it (a real server killed and started again on the same port and
store).

They follow KV buckets with nats-py KV watches, ordered consumers the server keeps in memory:
gone with a restart, nats-py makes them again only once they missed two heartbeats (10 to 20 s
after), and never if the store went back (a backup restored). Workers and gateways watch afresh
on reconnection (``sdk/worker/control_keys.py``), so a change reaches them within ``PROMPTLY``, a
bound under nats-py's own recovery: these tests fail without the fresh watch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from events import subjects
from events.catalog import JobSpec, JobStarted, JobSucceeded
from events.dispatch import LabelSet
from events.topology import ensure_topology
from sdk.client import Client
from sdk.embedded_server import EmbeddedServer
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from sdk.worker.rate_limits import limit_key, limited_as
from tests.eventually import assert_eventually
from tests.gateway_harness import claim, claim_eventually, running_gateway
from tests.jobs_harness import JobsHarness, fast_config, running
from tests.restarts import backup, connected, own_server, restart_under

PROMPTLY = 5.0
"""Seconds a change may take to reach the worker (nats-py's own watch needs 10 s at least)."""
GREET = LabelSet.of(["@greet"])


def greeter(url: str) -> Worker:
    worker = Worker(fast_config(url))

    @worker.job("greet")
    async def greet(ctx: JobContext) -> dict[str, str]:
        return {"greeting": "hello"}

    return worker


@asynccontextmanager
async def greeter_on_own_server(
    tmp_path: Path,
) -> AsyncIterator[tuple[EmbeddedServer, Worker, JobsHarness, Client]]:
    """A server of the test's own (to kill and restart), a greeter worker and a client on it."""
    with own_server(tmp_path / "nats") as server:
        worker = greeter(server.url)
        async with running(worker), connected(server) as nc:
            yield server, worker, JobsHarness(nc), Client(nc)


async def greet_paused(client: Client, worker: Worker) -> None:
    await client.pause_workers(handler="greet")
    await assert_eventually(lambda: worker.pauses.applies_to("greet"), timeout=PROMPTLY)


async def succeeded(harness: JobsHarness, wf: str, job: str) -> None:
    await assert_eventually(lambda: harness.events(wf, job, JobSucceeded), timeout=15)


async def held_back(harness: JobsHarness, wf: str, job: str) -> None:
    """No pull request waits on the greet label set's consumer, and the job has not started."""

    async def nobody_pulls() -> bool:
        info = await harness.nc.jetstream().consumer_info(subjects.EVENTS_STREAM, GREET.consumer)
        return not info.num_waiting

    await assert_eventually(nobody_pulls, timeout=10)
    assert await harness.events(wf, job, JobStarted) == []


async def test_a_pause_set_after_a_restart_stops_a_worker_that_lived_through_it(
    tmp_path: Path,
) -> None:
    async with greeter_on_own_server(tmp_path) as (server, worker, harness, client):
        await restart_under(worker, server)
        await harness.queue("wf", "before", uses="greet")  # served after the restart
        await succeeded(harness, "wf", "before")

        await greet_paused(client, worker)
        await harness.queue("wf", "paused", uses="greet")
        await held_back(harness, "wf", "paused")
        assert await client.resume_workers(handler="greet") is True
        await succeeded(harness, "wf", "paused")


async def test_a_pause_lifted_after_a_restart_lets_a_worker_that_lived_through_it_resume(
    tmp_path: Path,
) -> None:
    # The worst case: without the lift, the paused handler's jobs would wait for ever.
    async with greeter_on_own_server(tmp_path) as (server, worker, harness, client):
        await greet_paused(client, worker)
        await harness.queue("wf", "waits", uses="greet")
        await held_back(harness, "wf", "waits")

        await restart_under(worker, server)
        assert await client.resume_workers(handler="greet") is True
        await assert_eventually(lambda: not worker.pauses.applies_to("greet"), timeout=PROMPTLY)
        await succeeded(harness, "wf", "waits")


async def test_a_pause_missing_from_a_restored_store_is_lifted(tmp_path: Path) -> None:
    # The store is put back as it was before the pause: no delete marker says it was lifted, the
    # fresh watch simply lacks it (and nats-py's own watch, resuming after the sequence it last
    # saw, would never learn of it).
    with own_server(tmp_path / "nats") as server:
        async with connected(server) as nc:
            await ensure_topology(nc.jetstream())
        backup(server, tmp_path / "before-the-pause")
        worker = greeter(server.url)
        async with running(worker), connected(server) as nc:
            harness, client = JobsHarness(nc), Client(nc)
            await client.pause_workers(handler="greet")
            await assert_eventually(lambda: worker.pauses.applies_to("greet"), timeout=PROMPTLY)

            await restart_under(worker, server, between=tmp_path / "before-the-pause")
            await assert_eventually(lambda: not worker.pauses.applies_to("greet"), timeout=PROMPTLY)
            await harness.queue("wf", "after", uses="greet")
            await succeeded(harness, "wf", "after")


async def test_a_rate_limit_set_and_lifted_after_a_restart_reaches_a_worker_that_lived_through_it(
    tmp_path: Path,
) -> None:
    spec = JobSpec(run="true", labels=("metered",))
    operators = limit_key(*limited_as(spec))

    def limited() -> bool:
        return len(worker.limiter.limits_for(spec)) == 1

    with own_server(tmp_path / "nats") as server:
        worker = Worker(fast_config(server.url, labels=frozenset(["metered"])))
        async with running(worker), connected(server) as nc:
            harness, client = JobsHarness(nc), Client(nc)
            await restart_under(worker, server)
            key = await client.set_rate_limit(limit=1, per=3600, labels=("metered",))
            assert key == operators
            await assert_eventually(limited, timeout=PROMPTLY)
            for job in ("first", "second"):
                await harness.queue("wf", job, run="true", labels=["metered"])

            async def one_ran() -> bool:
                return bool(await harness.events("wf", "first", JobSucceeded)
                            or await harness.events("wf", "second", JobSucceeded))  # fmt: skip

            await assert_eventually(one_ran, timeout=15)
            [view] = await client.rate_limits()
            assert (view.started_in_window, view.full) == (1, True)  # the worker counted it

            assert await client.delete_rate_limit(labels=("metered",)) is True
            await assert_eventually(lambda: not limited(), timeout=PROMPTLY)
            await succeeded(harness, "wf", "first")
            await succeeded(harness, "wf", "second")


async def test_a_gateway_that_lived_through_a_restart_sees_label_sets_and_limits_changed_after_it(
    tmp_path: Path,
) -> None:
    with own_server(tmp_path / "nats") as server:
        async with connected(server) as nc:
            harness, client = JobsHarness(nc), Client(nc)
            await ensure_topology(nc.jetstream())
            await client.set_rate_limit(limit=1, per=3600, labels=("metered",))
            async with (
                running_gateway(server.url) as gateway,
                httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
            ):
                await harness.queue("wf", "first", run="true", labels=["metered"])
                await claim_eventually(http, "w", ["metered"])  # the window is full now

                server.kill()
                await assert_eventually(lambda: _health(http, 503))
                server.start()
                await assert_eventually(lambda: _health(http, 200), timeout=15)
                assert await client.delete_rate_limit(labels=("metered",)) is True
                # A label set first registered after the restart (its claim proves the gateway
                # watches afresh), then a job the old limit would hold back.
                await harness.queue("wf", "fresh", run="true", labels=["fresh"])
                await assert_eventually(_claimed(http, ["fresh"]), timeout=PROMPTLY)
                await harness.queue("wf", "second", run="true", labels=["metered"])
                await assert_eventually(_claimed(http, ["metered"]), timeout=PROMPTLY)


async def _health(http: httpx.AsyncClient, status: int) -> bool:
    return (await http.get("/healthz")).status_code == status


def _claimed(http: httpx.AsyncClient, labels: list[str]) -> Any:
    async def probe() -> Any:
        return await claim(http, "w", labels)

    return probe
