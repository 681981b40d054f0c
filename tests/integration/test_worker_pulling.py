"""How a worker serving several label sets shares its free slots between their pulls."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from nats.aio.msg import Msg
from pydantic import BaseModel

from events.catalog import JobSucceeded
from sdk.worker import Worker, pull
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running

_NEXT = "$JS.API.CONSUMER.MSG.NEXT.>"


class _Nothing(BaseModel):
    pass


async def test_an_idle_label_set_leaves_the_free_slots_to_the_one_that_delivers(
    harness: JobsHarness, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Idle after 0.2 s without a delivery (1 s in production), to keep the test short.
    monkeypatch.setattr(pull, "DELIVERING_WITHIN", 0.2, raising=False)
    pulls: list[tuple[str, int]] = []  # (consumer, batch) of every pull request the worker sent

    async def seen(msg: Msg) -> None:
        pulls.append((msg.subject.rpartition(".")[2], int(orjson.loads(msg.data)["batch"])))

    watching = await harness.nc.subscribe(_NEXT, cb=seen)
    worker = Worker(fast_config(nats_url, worker_id="w", labels={"linux"}, max_concurrent_jobs=4))

    @worker.job("work")
    async def work(_: _Nothing) -> None:
        await asyncio.sleep(0.05)  # (the work itself: label set A delivers for a second)

    try:
        async with running(worker):
            await harness.queue("wf-b", "j", uses="work", labels=["linux"])  # label set B
            await assert_eventually(lambda: harness.events("wf-b", "j", JobSucceeded))
            [b] = {consumer for consumer, _ in pulls}
            await harness.queue("wf-a", "j0", uses="work")  # label set A: no label
            await assert_eventually(lambda: harness.events("wf-a", "j0", JobSucceeded))
            a = next(consumer for consumer, _ in pulls if consumer != b)
            since = len(pulls)
            for i in range(1, 81):
                await harness.queue("wf-a", f"j{i}", uses="work")

            # While A delivers and B has delivered nothing for a while, B's long polls ask for
            # one message: the free slots are A's (before: half each, whatever B had).
            def b_polls_for_one() -> bool:
                assert (b, 1) in pulls[since:], pulls[since:]
                return True

            await assert_eventually(b_polls_for_one)
            assert max(batch for consumer, batch in pulls[since:] if consumer == a) > 1
            await assert_eventually(lambda: harness.events("wf-a", "j80", JobSucceeded))
    finally:
        await watching.unsubscribe()


async def test_a_label_set_whose_last_delivery_emptied_it_is_idle_at_once(
    harness: JobsHarness, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only "it held nothing more" can make it idle here: a delivery counts for a minute.
    monkeypatch.setattr(pull, "DELIVERING_WITHIN", 60.0, raising=False)
    worker = Worker(fast_config(nats_url, worker_id="w", labels={"linux"}, max_concurrent_jobs=4))
    release = asyncio.Event()

    @worker.job("work")
    async def work(_: _Nothing) -> None:
        await release.wait()

    async with running(worker):
        await harness.queue("wf-b", "j", uses="work", labels=["linux"])
        [puller] = await assert_eventually(lambda: _pullers_that_delivered(worker))
        # Its one job was the last it held: it leaves the free slots to the others at once,
        # not a minute (in production a second) after this delivery.
        assert not puller.delivering
        release.set()


def _pullers_that_delivered(worker: Worker) -> list[pull.Puller]:
    found = [
        p
        for p in worker._pullers.values()  # (what the worker decides from)
        if isinstance(p, pull.Puller) and p.slots.free < p.slots.size
    ]
    assert found, "no label set has delivered yet"
    return found
