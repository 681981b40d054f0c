"""A partition given up in a rebalance is deleted from KV only after its appends in flight land.

Found by ``test_engine_takeover.py`` in CI: when a second engine came back, the first gave up
half its partitions (each stopped, then its lease's key deleted) while a batch's stage for one of
them was already sent and its answers not yet back. The append landed after the key was deleted,
when the KV named no owner for the partition and another engine could have taken it. Here a
stage's send is held open, on a real nats-server, while a second engine's presence makes the
engine give the partition up. (A stage not yet written when the partition is given up is not
sent at all: ``test_engine_fencing.py``.)
"""

from __future__ import annotations

import asyncio
import itertools

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

import actors.engine.engine as engine_module
from actors.engine.engine import Engine
from actors.engine.settings import EngineSettings
from events import subjects
from events.pipeline import Pending, Pipeline
from events.store import EventStore
from tests.engine_harness import FAST, start_workflow, types
from tests.eventually import assert_eventually

ONE_JOB = {"name": "one", "jobs": {"a": {"run": "true"}}}
LAST = subjects.PARTITIONS - 1  # given up first when the fair share shrinks


def workflow_in(partition: int) -> str:
    return next(
        wf
        for wf in (f"wf-release-{n}" for n in itertools.count())
        if subjects.partition_of(wf) == partition
    )


class HeldAnswers(Pipeline):
    """The engine's pipeline, except that a send touching ``LAST`` is held open (after its
    appends landed) until ``answer``: a send still in flight when the partition is given up."""

    instances: list[HeldAnswers] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent = asyncio.Event()
        self.answer = asyncio.Event()
        self.settling = asyncio.Event()
        HeldAnswers.instances.append(self)

    async def _send(self, appends: list[Pending]) -> None:
        await super()._send(appends)  # written and answered, but the send is not over yet
        if any(subjects.partition_of(_workflow(p)) == LAST for p in appends):
            self.sent.set()
            await self.answer.wait()

    async def settled(self, timeout: float) -> None:
        self.settling.set()
        await super().settled(timeout)


def _workflow(pending: Pending) -> str:
    return pending.actor.filter.split(".")[2]  # evt.<partition>.<wf id>...


async def test_a_partition_given_up_keeps_its_lease_until_its_appends_in_flight_land(
    clean_nats: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    nc, wf = clean_nats, workflow_in(LAST)
    HeldAnswers.instances.clear()
    monkeypatch.setattr(engine_module, "Pipeline", HeldAnswers)
    engine = Engine(nc, settings=EngineSettings(**FAST.__dict__))
    kv = await nc.jetstream().key_value(subjects.KV_PARTITIONS)
    lease_key = f"engine.p.{LAST}"
    try:
        await engine.start()
        [pipeline] = HeldAnswers.instances
        assert engine.ownership.holds(LAST)
        await start_workflow(nc, wf, ONE_JOB)
        await asyncio.wait_for(pipeline.sent.wait(), timeout=10)

        # A second engine appears: the fair share halves and LAST is given up first.
        await kv.put("engine.e.engine-other", orjson.dumps({"process": "engine-other"}))
        await assert_eventually(lambda: not engine.ownership.holds(LAST), timeout=10)

        async def lease_deleted() -> bool:
            try:
                await kv.get(lease_key)
            except KeyNotFoundError:  # deleted (KeyDeletedError is a KeyNotFoundError)
                return True
            return False

        async def released_or_settling() -> bool:
            return pipeline.settling.is_set() or await lease_deleted()

        await assert_eventually(released_or_settling, timeout=10)
        assert not await lease_deleted(), "the lease was deleted with an append still in flight"

        pipeline.answer.set()
        await assert_eventually(lease_deleted, timeout=10)
        history = await EventStore(nc).history(wf)
        assert types(history)[0] == "wf.WorkflowStarted"
    finally:
        for held in HeldAnswers.instances:
            held.answer.set()  # a failed assertion must not leave the engine's batch waiting
        HeldAnswers.instances.clear()
        await engine.stop()
