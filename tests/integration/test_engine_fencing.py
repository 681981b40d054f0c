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

from actors.commands import ClaimJob, FailJob
from actors.engine.batch import Batch, Context
from actors.engine.definition_cache import DefinitionCache
from actors.engine.engine import utc_now
from actors.engine.groups import Groups
from actors.engine.labelsets import LabelSets
from actors.engine.states import States
from actors.engine.timers import RetryTimer, Timers
from actors.job import decide as job_decide
from actors.job import replay as job_replay
from events import subjects
from events.catalog import JobQueued
from events.pipeline import Pending, Pipeline
from events.store import ActorRef, EventStore
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
        groups=Groups(nc, EventStore(nc)),
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


RETRIED = {
    "name": "retried",
    "jobs": {
        "a": {"run": "false", "retry": {"max_attempts": 2, "backoff": "fixed", "delay": "1h"}}
    },
}


async def worker_fails_attempt_1(store: EventStore, wf: str) -> None:
    """What a worker appends: its claim of attempt 1 (epoch 1), then the failure and the retry
    it decides, in one append."""
    actor = ActorRef.job(wf, "a")
    for command in (
        ClaimJob(workflow_id=wf, job="a", attempt=1, worker_id="w", lease_ttl=30, now=utc_now()),
        FailJob(workflow_id=wf, job="a", epoch=1, worker_id="w", error="exit 1", now=utc_now()),
    ):
        recorded = await store.load(actor)
        state = job_replay(recorded)
        await store.append(
            actor, job_decide(state, command), expected_seq=state.last_seq,
            command_id=f"{wf}.{command.type}",
        )  # fmt: skip


async def test_results_left_while_the_lease_lapsed_are_not_skipped_when_newer_ones_come_first(
    clean_nats: NATS,
) -> None:
    """The lease lapses (renewals unanswered while JetStream elects a leader) and comes back
    with no other owner in between: a batch taken meanwhile is left unacknowledged, and its
    messages come back only after their ack wait, behind newer ones. Found by the chaos run
    (seed 624051693): the engine kept its state from before the left batch, folded the job's
    ``JobRetryScheduled`` first, then skipped the redelivered ``JobFailed`` as folded already,
    and queued the retry with ``prior_epoch`` 0, so its claim took the failed attempt's epoch."""
    nc, store, wf = clean_nats, EventStore(clean_nats), "wf-lapsed-results"
    lease = {"held": True}
    ctx = context(nc, Pipeline(nc, store), lambda _: lease["held"])  # one engine's memory
    results = await attempt_1_failed_under(nc, ctx, store, wf)

    [failed] = await results.fetch(1, timeout=5)
    lease["held"] = False
    await settle_all(ctx, [failed])  # left for later: not acknowledged
    lease["held"] = True
    [retry_scheduled] = await results.fetch(1, timeout=5)  # the newer one comes first
    await settle_all(ctx, [retry_scheduled])
    await retry_queued_after_the_failed_epoch(ctx, store, wf, results)


async def test_a_retry_whose_failure_went_to_another_engine_is_queued_after_its_epoch(
    clean_nats: NATS,
) -> None:
    """The engines of a partition pull from one durable consumer: a result delivered to an
    engine that no longer owns the partition is left unacknowledged and comes back after its
    ack wait, behind newer ones. Found by the short chaos run (seed 877968865): the owner got
    the retry's ``JobRetryScheduled`` without the ``JobFailed`` appended with it, folded it
    onto its state, skipped the failure when it came back, and queued the retry with
    ``prior_epoch`` 0, so its claim took the failed attempt's epoch. The owner now sees that
    the first part of the retry's append is missing and reads the workflow from the log."""
    nc, store, wf = clean_nats, EventStore(clean_nats), "wf-failure-elsewhere"
    ctx = context(nc, Pipeline(nc, store), lambda _: True)  # the owner's memory
    results = await attempt_1_failed_under(nc, ctx, store, wf)

    [failed] = await results.fetch(1, timeout=5)  # delivered to another engine: left
    assert failed.subject.endswith(".JobFailed")
    [retry_scheduled] = await results.fetch(1, timeout=5)  # the newer one reaches the owner
    await settle_all(ctx, [retry_scheduled])
    await retry_queued_after_the_failed_epoch(ctx, store, wf, results)


async def attempt_1_failed_under(
    nc: NATS, ctx: Context, store: EventStore, wf: str
) -> JetStreamContext.PullSubscription:
    """A ``RETRIED`` workflow started and settled by ``ctx`` (it holds the workflow's state),
    then attempt 1 failed by a worker; returns a pull on the job's failure and retry events."""
    await start_workflow(nc, wf, RETRIED)
    commands = await nc.jetstream().pull_subscribe(
        subjects.partition_commands(subjects.partition_of(wf)), durable=f"{wf}-cmd",
        stream=subjects.COMMANDS_STREAM,
    )  # fmt: skip
    [start] = await commands.fetch(1, timeout=5)
    await settle_all(ctx, [start])  # queued attempt 1
    results = await nc.jetstream().pull_subscribe(
        f"evt.*.{wf}.job.*.*", durable=f"{wf}-evt", stream=subjects.EVENTS_STREAM,
        config=ConsumerConfig(ack_wait=1.0, filter_subjects=[
            subjects.job_event(wf, "a", "JobFailed"),
            subjects.job_event(wf, "a", "JobRetryScheduled"),
        ]),
    )  # fmt: skip
    await worker_fails_attempt_1(store, wf)
    return results


async def retry_queued_after_the_failed_epoch(
    ctx: Context, store: EventStore, wf: str, results: JetStreamContext.PullSubscription
) -> None:
    """The failure comes back (its ack wait passed), then the retry's timer fires: attempt 2
    is queued after the epoch attempt 1's claim took."""
    [failed_again] = await results.fetch(1, timeout=10)
    assert failed_again.metadata.num_delivered == 2
    await settle_all(ctx, [failed_again])
    timer = RetryTimer(workflow_id=wf, job="a", attempt=2, due=utc_now())
    batch = Batch(ctx)
    await batch.take([], [timer])
    await batch.settle()
    queued = [r.event for r in await store.history(wf) if isinstance(r.event, JobQueued)]
    assert [(q.attempt, q.prior_epoch) for q in queued] == [(1, 0), (2, 1)]


async def settle_all(ctx: Context, messages: list[Msg]) -> None:
    batch = Batch(ctx)
    await batch.take(messages, [])
    await batch.settle()
