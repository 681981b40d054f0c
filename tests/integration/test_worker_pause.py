"""Pausing a worker or a handler (``jetwork workers pause``) on a real nats-server.

A paused worker sends no pull request for the paused label sets (its consumer shows no waiting
request) and says so in its presence; jobs queued meanwhile are run by a worker that is not
paused, or wait, and run once resumed. The switch outlives processes: a worker started while its
handler is paused starts paused.
"""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import JobStarted, JobSucceeded
from events.dispatch import LabelSet
from sdk.cli import main
from sdk.client import Client
from sdk.errors import InvalidArgument
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running


async def paused_on(client: Client, worker: Worker) -> tuple[str, ...]:
    listed = {w.worker_id: w for w in await client.workers()}
    return listed[worker.worker_id].paused if worker.worker_id in listed else ()


async def waiting_pulls(nc: NATS, labelset: LabelSet) -> int:
    info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, labelset.consumer)
    return int(info.num_waiting or 0)


async def started_by(harness: JobsHarness, wf: str, job: str) -> str:
    async def probe() -> str:
        found = await harness.events(wf, job, JobStarted)
        assert found, await harness.types(wf, job)
        return str(found[0].worker_id)

    return await assert_eventually(probe, timeout=15)


async def test_a_paused_worker_claims_nothing_until_resumed(
    harness: JobsHarness, nats_url: str, clean_nats: NATS
) -> None:
    first, second = Worker(fast_config(nats_url)), Worker(fast_config(nats_url))
    client = Client(clean_nats)
    async with running(first, second):
        await client.pause_workers(worker_id=first.worker_id, reason="maintenance")
        await assert_eventually(lambda: paused_on(client, first), timeout=10)
        assert await paused_on(client, second) == ()
        for n in range(6):
            await harness.queue("wf", f"p{n}", run="true")
        assert {await started_by(harness, "wf", f"p{n}") for n in range(6)} == {second.worker_id}

        assert await client.resume_workers(worker_id=first.worker_id) is True
        await client.pause_workers(worker_id=second.worker_id)
        await assert_eventually(lambda: paused_on(client, second), timeout=10)

        async def first_resumed() -> bool:
            return await paused_on(client, first) == ()

        await assert_eventually(first_resumed, timeout=10)
        for n in range(6):
            await harness.queue("wf", f"r{n}", run="true")
        assert {await started_by(harness, "wf", f"r{n}") for n in range(6)} == {first.worker_id}
    assert await client.resume_workers(worker_id=first.worker_id) is False  # not paused


async def test_a_paused_handler_waits_and_a_worker_started_meanwhile_starts_paused(
    harness: JobsHarness, nats_url: str, clean_nats: NATS
) -> None:
    def worker() -> Worker:
        made = Worker(fast_config(nats_url))

        @made.job("greet")
        async def greet(ctx: JobContext) -> dict[str, str]:
            return {"greeting": "hello"}

        return made

    client = Client(clean_nats)
    greet_set = LabelSet.of(["@greet"])
    first, plain = worker(), Worker(fast_config(nats_url))  # plain: no greet handler
    async with running(first, plain):
        await client.pause_workers(handler="greet", reason="upstream down")
        await assert_eventually(lambda: paused_on(client, first), timeout=10)
        await assert_eventually(lambda: plain.pauses.applies_to("greet"), timeout=10)
        assert plain.pauses.paused == ()  # the switch reached it, but it has no such handler
        await harness.queue("wf", "hello", uses="greet")
        late = worker()  # started while the handler is paused
        async with running(late):
            assert await paused_on(client, late) == ("@greet",)

            async def nobody_pulls() -> bool:
                return await waiting_pulls(clean_nats, greet_set) == 0

            await assert_eventually(nobody_pulls, timeout=10)
            assert await harness.events("wf", "hello", JobStarted) == []
            assert await client.resume_workers(handler="greet") is True
            await assert_eventually(lambda: harness.events("wf", "hello", JobSucceeded), timeout=15)


async def test_the_commands_and_their_errors(nats_url: str, clean_nats: NATS) -> None:
    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*args, "--nats", nats_url])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    worker = Worker(fast_config(nats_url))
    async with running(worker):
        code, out = await asyncio.to_thread(invoke, "workers", "pause", worker.worker_id)
        assert (code, out.strip()) == (0, f"paused worker {worker.worker_id}: running jobs "
                                           "finish, no new claims")  # fmt: skip
        await assert_eventually(lambda: paused_on(Client(clean_nats), worker), timeout=10)
        code, out = await asyncio.to_thread(invoke, "workers")
        assert code == 0 and "paused" in out and "worker" in out
        code, out = await asyncio.to_thread(invoke, "workers", "pause", "w-nobody")
        assert code == 1 and "no live worker has id 'w-nobody'" in out
        code, out = await asyncio.to_thread(invoke, "workers", "pause", "--handler", "a b")
        assert code == 1 and "'a b' is not a valid handler name" in out
        code, out = await asyncio.to_thread(invoke, "workers", "pause")
        assert code == 2 and "name either a WORKER_ID or a handler" in out
        code, out = await asyncio.to_thread(invoke, "workers", "resume", worker.worker_id)
        assert (code, out.strip()) == (0, f"resumed worker {worker.worker_id}")
    with pytest.raises(InvalidArgument, match="either a worker id or a handler"):
        await Client(clean_nats).pause_workers(worker_id="w", handler="h")
