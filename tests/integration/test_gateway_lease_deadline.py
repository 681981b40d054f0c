"""HTTP leases kept by the dispatch's ack deadline (``gateway.keeping``): a claim whose
``lease_ttl_secs`` is its label set consumer's ack wait leaves the dispatch unacked and arms no
timer; heartbeats renew the deadline, only an accepted result acks, and a vanished worker's job
is delivered again when the deadline lapses. Real HTTP, a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from events import subjects
from events.catalog import JobResultRejected, JobStarted
from events.dispatch import LabelSet
from events.store import EventStore
from sdk.worker.consumers import ensure_consumer
from tests.eventually import assert_eventually
from tests.gateway_harness import (
    claim,
    claim_eventually,
    finished,
    running_engine,
    running_gateway,
    start,
    types_of,
)

DEADLINE = 2.0
"""Ack wait of the ``short`` label set's consumer, made before the gateway sees it (as a NATS
worker with a 2 s lease would make it): claims asking for 2 s are kept by its deadline."""
SHORT = LabelSet.of(["short"])
ONE_JOB = {"name": "one", "jobs": {"only": {"run": "true", "labels": ["short"]}}}


@dataclass
class Stack:
    nc: NATS
    http: httpx.AsyncClient
    store: EventStore


@pytest.fixture
async def stack(clean_nats: NATS, nats_url: str) -> AsyncIterator[Stack]:
    await ensure_consumer(clean_nats, SHORT, lease_ttl=DEADLINE)
    async with (
        running_engine(clean_nats),
        running_gateway(nats_url) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        yield Stack(clean_nats, http, EventStore(clean_nats))


async def unacked(nc: NATS) -> int:
    info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, SHORT.consumer)
    return int(info.num_ack_pending)


async def has_timer(nc: NATS, wf: str, job: str, epoch: int) -> bool:
    subject = subjects.timer_set(subjects.partition_of(wf), f"{wf}.{job}.lease-e{epoch}")
    try:
        await nc.jetstream().get_last_msg(subjects.COMMANDS_STREAM, subject)
    except NotFoundError:
        return False
    return True


async def test_a_lease_as_long_as_the_ack_wait_holds_the_dispatch_and_arms_no_timer(
    stack: Stack,
) -> None:
    wf = await start(stack.http, ONE_JOB)
    held = await claim_eventually(stack.http, "keeper", ["short"], ttl=DEADLINE)
    lease_id = held["lease"]["lease_id"]
    assert await unacked(stack.nc) == 1
    assert not await has_timer(stack.nc, wf, "only", 1)
    for _ in range(6):  # 3 s: longer than the deadline, renewed every half second
        beat = await stack.http.post(f"/api/jobs/{lease_id}/heartbeat")
        assert beat.status_code == 200, beat.text
        assert await claim(stack.http, "thief", ["short"], ttl=DEADLINE) is None
        await asyncio.sleep(0.5)
    done = await stack.http.post(f"/api/jobs/{lease_id}/complete", json={})
    assert done.status_code == 200, done.text

    async def acked() -> bool:
        return await unacked(stack.nc) == 0

    await assert_eventually(acked)
    history = await finished(stack.store, wf)
    assert [r.event.epoch for r in history if isinstance(r.event, JobStarted)] == [1]


async def test_a_vanished_workers_dispatch_is_delivered_again_and_its_late_result_acks_nothing(
    stack: Stack,
) -> None:
    wf = await start(stack.http, ONE_JOB)
    first = await claim_eventually(stack.http, "gone", ["short"], ttl=DEADLINE)
    old = first["lease"]["lease_id"]
    # "gone" never calls again: the deadline lapses and the same dispatch goes to "next".
    second = await claim_eventually(stack.http, "next", ["short"], ttl=DEADLINE, wait=5)
    assert (second["job"]["attempt"], second["job"]["epoch"]) == (1, 2)
    late = await stack.http.post(f"/api/jobs/{old}/complete", json={"outputs": {"x": "1"}})
    assert late.status_code == 409 and late.json()["code"] == "lease_gone"
    new = second["lease"]["lease_id"]
    # The heartbeat's renewal is answered on the gateway's connection after anything it sent
    # before, so a stray ack of the late result would have been applied by now.
    assert (await stack.http.post(f"/api/jobs/{new}/heartbeat")).status_code == 200
    assert await unacked(stack.nc) == 1, "the late result acked the new holder's dispatch"
    assert (await stack.http.post(f"/api/jobs/{new}/complete", json={})).status_code == 200
    history = await finished(stack.store, wf)
    rejected = [r.event for r in history if isinstance(r.event, JobResultRejected)]
    assert [(e.epoch, e.worker_id) for e in rejected] == [(1, "gone")]
    assert types_of(history, "only").count("JobSucceeded") == 1


async def test_a_cancelled_job_acks_its_dispatch_when_its_worker_hears_of_it(
    stack: Stack,
) -> None:
    wf = await start(stack.http, ONE_JOB)
    held = await claim_eventually(stack.http, "w", ["short"], ttl=DEADLINE)
    await stack.http.post(f"/api/workflows/{wf}/cancel", json={"reason": "enough"})

    async def told() -> bool:
        beat = await stack.http.post(f"/api/jobs/{held['lease']['lease_id']}/heartbeat")
        return beat.status_code == 409

    await assert_eventually(told)

    async def acked() -> bool:
        return await unacked(stack.nc) == 0

    await assert_eventually(acked)
    history = await finished(stack.store, wf)
    assert types_of(history)[-1] == "WorkflowCancelled"
