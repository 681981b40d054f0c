"""An engine whose partition lease lapses part-way through a decision sends nothing more of it.

A decision is appended in stages (``reactions.stages``): a start is ``WorkflowStarted``, then its
first jobs' ``JobQueued`` once the first stage landed. An owner frozen (SIGSTOP, a long pause)
while it waits for the first stage's answers must not send the second when it wakes up past its
lease: another engine may own the partition by then. Here the lease lapses exactly there, in
process, on a real nats-server; the real-process version is ``test_engine_takeover.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from actors.engine.batch import Batch, Context
from actors.engine.definition_cache import DefinitionCache
from actors.engine.engine import utc_now
from actors.engine.labelsets import LabelSets
from actors.engine.states import States
from actors.engine.timers import Timers
from events import subjects
from events.pipeline import Pending, Pipeline
from events.store import EventStore
from tests.engine_harness import start_workflow, types

ONE_JOB = {"name": "one", "jobs": {"a": {"run": "true"}}}


class LeaseLapsesAfterTheFirstStage(Pipeline):
    """Sends as the engine's pipeline does; the lease lapses while the first stage's answers
    are awaited (what a freeze of the process in that await amounts to)."""

    def __init__(self, nc: NATS, store: EventStore, lapse: Callable[[], None]) -> None:
        super().__init__(nc, store)
        self._lapse = lapse

    async def send(self, appends: list[Pending]) -> None:
        await super().send(appends)
        self._lapse()


def context(nc: NATS, pipeline: Pipeline, holds: Callable[[int], bool]) -> Context:
    counter = iter(range(1_000_000))
    return Context(
        nc=nc,
        states=States(nc, EventStore(nc), size=100),
        definitions=DefinitionCache(),
        labelsets=LabelSets(nc),
        pipeline=pipeline,
        timers=Timers(nc, on_fire=lambda _: None),
        holds=holds,
        clock=utc_now,
        stopping=lambda: False,
        decision_id=lambda: f"fencing-test.{next(counter)}",
    )


async def test_a_lease_lost_between_two_stages_leaves_the_rest_to_the_next_owner(
    clean_nats: NATS,
) -> None:
    nc, store, wf = clean_nats, EventStore(clean_nats), "wf-fenced"
    commands, start = await started(nc, wf, durable="fencing-test")

    lease = {"held": True}
    lapsing = LeaseLapsesAfterTheFirstStage(nc, store, lambda: lease.update(held=False))
    await settle(context(nc, lapsing, lambda _: lease["held"]), start)
    assert types(await store.history(wf)) == ["wf.WorkflowStarted"]

    # Nothing was acknowledged: the start comes back (to the partition's next owner), which
    # finishes the decision from the log.
    [again] = await commands.fetch(1, timeout=10)
    assert again.metadata.num_delivered == 2
    await settle(context(nc, Pipeline(nc, store), lambda _: True), again)
    assert types(await store.history(wf)) == ["wf.WorkflowStarted", "job.a.JobQueued"]


class LeaseLapsesAsTheStageLeaves(Pipeline):
    """The lease lapses after the batch checked it and before the stage's bytes are written:
    what a freeze of the process between the two amounts to (the bytes would go out on waking,
    after another engine took the partition)."""

    def __init__(self, nc: NATS, store: EventStore, lapse: Callable[[], None]) -> None:
        super().__init__(nc, store)
        self._lapse = lapse

    async def _send(self, appends: list[Pending]) -> None:
        self._lapse()
        await super()._send(appends)


async def test_a_lease_lost_between_the_check_and_the_write_sends_nothing(
    clean_nats: NATS,
) -> None:
    nc, store, wf = clean_nats, EventStore(clean_nats), "wf-fenced-at-write"
    commands, start = await started(nc, wf, durable="fencing-write-test")

    lease = {"held": True}
    lapsing = LeaseLapsesAsTheStageLeaves(nc, store, lambda: lease.update(held=False))
    await settle(context(nc, lapsing, lambda _: lease["held"]), start)
    assert await store.history(wf) == []  # not even the first stage

    [again] = await commands.fetch(1, timeout=10)  # nothing acked: the next owner decides
    await settle(context(nc, Pipeline(nc, store), lambda _: True), again)
    assert types(await store.history(wf)) == ["wf.WorkflowStarted", "job.a.JobQueued"]


async def started(
    nc: NATS, wf: str, *, durable: str
) -> tuple[JetStreamContext.PullSubscription, Msg]:
    """Start ``wf`` and take its start command as the partition's owner would (ack wait 1 s)."""
    await start_workflow(nc, wf, ONE_JOB)
    commands = await nc.jetstream().pull_subscribe(
        subjects.partition_commands(subjects.partition_of(wf)),
        durable=durable,
        stream=subjects.COMMANDS_STREAM,
        config=ConsumerConfig(ack_wait=1.0),
    )
    [start] = await commands.fetch(1, timeout=5)
    return commands, start


async def settle(ctx: Context, msg: Msg) -> None:
    batch = Batch(ctx)
    await batch.take([msg], [])
    await batch.settle()
