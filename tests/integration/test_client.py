"""The client against a real nats-server, with the engine running in-process on the test's nc.

The in-test runner of ``tests.engine_harness`` stands in for workers: it claims jobs through the
real job actor and reports the outcome a test chooses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client as NATS

from actors import job
from actors.commands import CompleteJob
from actors.definitions import load_workflow_file
from actors.engine import Engine
from actors.job import JobState
from events import subjects
from events.connection import NatsSettings, connect
from events.errors import InvalidWorkflow, ServerUnavailable, WorkflowNotFound
from events.requests import workflow_id_for
from events.store import ActorRef, EventStore
from projections.projector import Projector, ProjectorSettings
from projections.reader import Views
from sdk.builder import Workflow
from sdk.client import Client, event_filter
from sdk.errors import InvalidArgument, JobNotFound, WaitTimeout, WorkflowNotStarted
from sdk.worker import Worker
from sdk.worker.config import WorkerConfig
from tests.engine_harness import InTestRunner, Outcome, RecordingDispatcher, running_engine
from tests.eventually import assert_eventually

FAST_PROJECTOR = ProjectorSettings(
    poll_interval=0.1, generation_check=0.1, lease_ttl=2.0, renew_every=0.25
)
TWO_STEPS = {
    "name": "two-steps",
    "inputs": {"who": {"default": "world"}},
    "jobs": {
        "a": {"run": "echo a"},
        "b": {"needs": ["a"], "run": "echo ${{ needs.a.outputs.greeting }} ${{ inputs.who }}"},
    },
}


async def complete(runner: InTestRunner, wf: str, name: str, epoch: int) -> None:
    """Report success for a job the runner left hanging."""
    command = CompleteJob(
        workflow_id=wf, job=name, epoch=epoch, worker_id="runner",
        outputs={"greeting": "hi"}, now=datetime.now(UTC),
    )  # fmt: skip
    await runner._append(ActorRef.job(wf, name), lambda current: job.decide(current, command))


def greet(state: JobState) -> Outcome:
    return Outcome(outputs={"greeting": "hello"} if state.job == "a" else {})


@dataclass
class Rig:
    nc: NATS
    client: Client
    engine: Engine
    runner: InTestRunner
    dispatcher: RecordingDispatcher


@pytest.fixture
async def rig(clean_nats: NATS) -> AsyncIterator[Rig]:
    dispatcher = RecordingDispatcher()
    engine = await running_engine(clean_nats, dispatcher)
    runner = InTestRunner(EventStore(clean_nats), dispatcher, greet).start()
    rig = Rig(clean_nats, Client(clean_nats), engine, runner, dispatcher)
    try:
        yield rig
    finally:
        await runner.stop()
        await rig.engine.stop()


async def test_start_a_file_wait_status_and_history(rig: Rig, repo_root: Path) -> None:
    handle = await rig.client.start(repo_root / "examples" / "hello.yaml", inputs={"who": "you"})
    view = await handle.wait(timeout=15)
    assert view.workflow_id == handle.workflow_id
    assert (view.name, view.status) == ("hello", "succeeded")
    assert view.jobs["greet"].status == "succeeded"
    assert view.jobs["greet"].attempts == 1
    assert view.ended_at is not None
    assert await handle.status() == view

    history = await rig.client.history(handle.workflow_id)
    kinds = [recorded.event.event_type for recorded in history]
    assert kinds[0] == "WorkflowStarted"
    assert kinds[-1] == "WorkflowSucceeded"
    assert [r.seq for r in history] == sorted(r.seq for r in history)
    started = history[0].event
    assert started.inputs == {"who": "you"}  # type: ignore[attr-defined]
    assert started.definition == load_workflow_file(repo_root / "examples" / "hello.yaml")  # type: ignore[attr-defined]


async def test_start_takes_a_builder_a_definition_or_a_mapping(rig: Rig) -> None:
    wf = Workflow("built")
    first = wf.job("a", run="echo a")
    wf.job("b", run="echo b", needs=[first])
    handles = [
        await rig.client.start(wf),
        await rig.client.start(wf.build()),
        await rig.client.start(TWO_STEPS, inputs={"who": "jetwork"}),
    ]
    views = [await handle.wait(timeout=15) for handle in handles]
    assert [v.status for v in views] == ["succeeded"] * 3
    assert [v.name for v in views] == ["built", "built", "two-steps"]
    queued = [
        r.event
        for r in await rig.client.history(handles[2].workflow_id)
        if r.event.event_type == "JobQueued" and r.event.job == "b"  # type: ignore[attr-defined]
    ]
    assert queued[0].spec.run == "echo hello jetwork"  # type: ignore[attr-defined]


async def test_an_idempotency_key_starts_one_workflow(rig: Rig) -> None:
    first = await rig.client.start(TWO_STEPS, idempotency_key="order-42")
    second = await rig.client.start(TWO_STEPS, idempotency_key="order-42")
    assert first.workflow_id == second.workflow_id == workflow_id_for("order-42")
    await first.wait(timeout=15)
    history = await rig.client.history(first.workflow_id)
    assert [r.event.event_type for r in history].count("WorkflowStarted") == 1


async def test_an_invalid_workflow_lists_every_problem_and_sends_nothing(
    rig: Rig, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\njobs:\n  a: {run: echo, needs: [nope]}\n  b: {retry: x}\n")
    with pytest.raises(InvalidWorkflow) as caught:
        await rig.client.start(path)
    problems = caught.value.problems
    assert len(problems) >= 3
    assert all(problem.startswith(f"{path}:") for problem in problems)
    assert any("nope" in problem for problem in problems)
    with pytest.raises(InvalidWorkflow, match="unknown input"):
        await rig.client.start(TWO_STEPS, inputs={"whom": "x"})
    info = await rig.nc.jetstream().stream_info(subjects.COMMANDS_STREAM)
    assert info.state.messages == 0


async def test_unknown_ids_are_not_found(rig: Rig) -> None:
    for call in (
        rig.client.status("wf-unknown"),
        rig.client.history("wf-unknown"),
        rig.client.wait("wf-unknown", timeout=5),
        rig.client.cancel("wf-unknown"),
    ):
        with pytest.raises(WorkflowNotFound, match="'wf-unknown' not found"):
            await call
    with pytest.raises(InvalidArgument, match="not valid"):
        await rig.client.status("evt.>")


async def test_logs_of_an_unknown_job_name_the_known_ones(rig: Rig) -> None:
    handle = await rig.client.start(TWO_STEPS)
    await handle.wait(timeout=15)
    with pytest.raises(JobNotFound, match=r"has no job 'c' \(its jobs: a, b\)"):
        async for _ in rig.client.logs(handle.workflow_id, "c"):
            pass
    with pytest.raises(WorkflowNotFound):
        async for _ in rig.client.logs("wf-unknown", "a"):
            pass


async def test_a_start_waiting_for_an_engine_is_not_started_yet(rig: Rig) -> None:
    await rig.engine.stop()
    handle = await rig.client.start(TWO_STEPS)
    with pytest.raises(WorkflowNotStarted, match="waits for an engine"):
        await handle.status()
    with pytest.raises(WaitTimeout, match=r"did not end within 0\.3s"):
        await handle.wait(timeout=0.3)
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    assert (await handle.wait(timeout=15)).status == "succeeded"


async def test_wait_times_out_with_the_current_status(rig: Rig) -> None:
    rig.runner.behaviour = lambda state: Outcome(hang=True)
    handle = await rig.client.start(TWO_STEPS)
    await assert_eventually(lambda: rig.runner.hanging, message="job never started")
    with pytest.raises(WaitTimeout, match=r"still running") as caught:
        await handle.wait(timeout=0.2)
    assert caught.value.retryable


async def test_cancel_ends_the_workflow(rig: Rig) -> None:
    await rig.runner.stop()  # nobody claims: the first job stays queued
    handle = await rig.client.start(TWO_STEPS)

    async def queued() -> bool:
        try:
            view = await handle.status()
        except WorkflowNotStarted:
            return False
        return view.jobs["a"].status == "queued"

    await assert_eventually(queued)
    await handle.cancel(reason="changed my mind")
    view = await handle.wait(timeout=15)
    assert view.status == "cancelled"
    assert view.reason == "changed my mind"
    assert {job.status for job in view.jobs.values()} == {"cancelled"}


async def test_subscribe_filters_by_workflow_job_and_type(rig: Rig) -> None:
    rig.runner.behaviour = lambda state: Outcome(hang=True)  # hold the run until we subscribe
    handle = await rig.client.start(TWO_STEPS)
    await assert_eventually(lambda: rig.runner.hanging, message="job never started")
    wf = handle.workflow_id
    seen: list[str] = []

    async def collect() -> None:
        async for recorded in rig.client.subscribe(workflow_id=wf, event_type="JobSucceeded"):
            seen.append(recorded.subject)
            if len(seen) == 2:
                return

    async def everything_from_start() -> list[str]:
        found = []
        async for recorded in rig.client.subscribe(workflow_id=wf, job="a", from_start=True):
            found.append(recorded.event.event_type)
            if recorded.event.event_type == "JobSucceeded":
                return found
        return found

    collector = asyncio.create_task(collect())
    of_job_a = asyncio.create_task(everything_from_start())

    async def both_consumers_exist() -> bool:
        # The live one sees only what is appended after its consumer exists: complete the job
        # before that, and its JobSucceeded is (rightly) never seen.
        infos = await rig.nc.jetstream().consumers_info(subjects.EVENTS_STREAM)
        filters = [
            [i.config.filter_subject or "", *(i.config.filter_subjects or [])] for i in infos
        ]
        return sum(any(wf in f for f in each) for each in filters) >= 2

    await assert_eventually(both_consumers_exist, message="the subscriptions never started")
    rig.runner.behaviour = greet
    _, name, epoch = rig.runner.hanging[0]
    await complete(rig.runner, wf, name, epoch)
    await asyncio.wait_for(collector, 15)
    assert seen == [
        subjects.job_event(wf, "a", "JobSucceeded"),
        subjects.job_event(wf, "b", "JobSucceeded"),
    ]
    assert await asyncio.wait_for(of_job_a, 15) == ["JobQueued", "JobStarted", "JobSucceeded"]


async def test_follow_yields_views_until_the_end(rig: Rig) -> None:
    handle = await rig.client.start(TWO_STEPS)
    views = [view async for view in rig.client.follow(handle.workflow_id)]
    assert views[0].status == "running"
    assert views[-1].status == "succeeded"
    assert views[-1] == await handle.status()


def test_event_filters() -> None:
    p = subjects.partition_of("wf-1")
    assert event_filter() == "evt.>"
    assert event_filter("wf-1") == f"evt.{p}.wf-1.>"
    assert event_filter("wf-1", "build") == f"evt.{p}.wf-1.job.build.>"
    assert event_filter(None, "build") == "evt.*.*.job.build.>"
    assert event_filter(None, None, "JobFailed") == "evt.*.*.job.*.JobFailed"
    assert event_filter(None, None, "JobQueued") == "evt.*.*.job.*.JobQueued.>"
    assert event_filter("wf-1", None, "WorkflowSucceeded") == f"evt.{p}.wf-1.wf.WorkflowSucceeded"
    assert event_filter("wf-1", "a", "JobStarted") == f"evt.{p}.wf-1.job.a.JobStarted"
    with pytest.raises(InvalidArgument, match="unknown event type 'JobExploded'"):
        event_filter(event_type="JobExploded")
    with pytest.raises(InvalidArgument, match="is a workflow event"):
        event_filter("wf-1", "a", "WorkflowFailed")
    with pytest.raises(InvalidArgument, match=r"job name 'a\.b'"):
        event_filter("wf-1", "a.b")


async def publish_log(
    nc: NATS, wf: str, job: str, attempt: int, lines: list[str], *, first_seq: int = 1
) -> None:
    """One batch as a worker publishes it (its lines numbered on from ``first_seq``)."""
    chunks = [
        {"seq": i, "stream": "stdout", "line": line, "ts": 1.5}
        for i, line in enumerate(lines, first_seq)
    ]
    batch = {"workflow_id": wf, "job": job, "attempt": attempt, "epoch": attempt,
             "worker_id": "w-test", "chunks": chunks}  # fmt: skip
    await nc.jetstream().publish(subjects.log(wf, job), orjson.dumps(batch))


async def test_logs_read_in_order_and_follow_until_the_job_ends(rig: Rig) -> None:
    rig.runner.behaviour = lambda state: Outcome(hang=True)
    handle = await rig.client.start(TWO_STEPS)
    wf = handle.workflow_id
    await assert_eventually(lambda: rig.runner.hanging, message="job never started")
    await publish_log(rig.nc, wf, "a", 1, ["one", "two"])
    await rig.nc.jetstream().publish(subjects.log(wf, "a"), b"not a batch")
    lines = [line async for line in rig.client.logs(wf, "a")]
    assert [(line.attempt, line.seq, line.line) for line in lines] == [(1, 1, "one"), (1, 2, "two")]

    followed: list[str] = []

    async def follow() -> None:
        async for line in rig.client.logs(wf, "a", follow=True):
            followed.append(line.line)

    follower = asyncio.create_task(follow())
    await assert_eventually(lambda: followed == ["one", "two"])
    await publish_log(rig.nc, wf, "a", 1, ["three"], first_seq=3)
    await assert_eventually(lambda: followed == ["one", "two", "three"])
    assert not follower.done()
    await publish_log(rig.nc, wf, "a", 1, ["four"], first_seq=4)
    rig.runner.behaviour = greet
    _, name, epoch = rig.runner.hanging[0]
    await complete(rig.runner, wf, name, epoch)
    await asyncio.wait_for(follower, 15)
    assert followed == ["one", "two", "three", "four"]


async def test_dead_letters_show_what_the_engine_refused(rig: Rig) -> None:
    garbage = subjects.command("start", "wf-garbage")
    await rig.nc.jetstream().publish(garbage, b"{not json")

    async def refused() -> list[str]:
        return [letter.subject for letter in await rig.client.dead_letters(limit=10)]

    assert await assert_eventually(refused) == [garbage]
    with pytest.raises(InvalidArgument):
        await rig.client.dead_letters(limit=0)


@pytest.fixture
async def projector(clean_nats: NATS) -> AsyncIterator[Views]:
    running = Projector(clean_nats, settings=FAST_PROJECTOR)
    await running.start()
    try:
        yield Views(clean_nats)
    finally:
        await running.stop()


async def test_list_is_newest_first_and_filters(rig: Rig, projector: Views) -> None:
    first = await rig.client.start(TWO_STEPS)
    await first.wait(timeout=15)
    other = await rig.client.start({"name": "other", "jobs": {"x": {"run": "echo x"}}})
    await other.wait(timeout=15)
    rig.runner.behaviour = lambda state: Outcome(error="boom", retryable=False)
    broken = await rig.client.start(TWO_STEPS)
    assert (await broken.wait(timeout=15)).status == "failed"
    await projector.wait_caught_up()

    rows = await rig.client.list()
    assert [r.workflow_id for r in rows] == [
        broken.workflow_id,
        other.workflow_id,
        first.workflow_id,
    ]
    assert rows[0].job_counts["failed"] == 1
    failed = await rig.client.list(status="failed")
    assert [r.workflow_id for r in failed] == [broken.workflow_id]
    named = await rig.client.list(name="two-steps", limit=1)
    assert [r.workflow_id for r in named] == [broken.workflow_id]
    assert await rig.client.lag() == 0
    with pytest.raises(InvalidArgument, match="unknown status 'done'"):
        await rig.client.list(status="done")
    with pytest.raises(InvalidArgument, match="limit"):
        await rig.client.list(limit=0)

    stats = await rig.client.rebuild_projections()
    assert stats.workflows == 3
    assert await rig.client.list() == rows


async def test_workers_lists_the_live_ones(rig: Rig, nats_url: str) -> None:
    assert await rig.client.workers() == []
    worker = Worker(WorkerConfig(nats_url=nats_url, labels=frozenset({"gpu"})))
    await worker.start()
    try:
        found = await rig.client.workers()
    finally:
        await worker.stop()
    assert [(w.worker_id, w.labels) for w in found] == [(worker.worker_id, ("gpu",))]


async def test_projection_reads_reuse_one_reader_and_add_no_subscriptions(
    clean_nats: NATS, nats_url: str
) -> None:
    async with Client.connect(nats_url) as client:  # its own connection: only its subscriptions
        assert await client.list() == []
        assert await client.workers() == []
        await client.lag()
        opened = len(client.nc._subs)  # the reader's reply inboxes, opened once
        for _ in range(20):
            await client.list(limit=5)
            await client.workers()
            await client.lag()
        assert len(client.nc._subs) == opened
    assert client.nc.is_closed


async def test_a_client_on_a_borrowed_connection_leaves_no_subscription_behind(
    clean_nats: NATS,
) -> None:
    nc = await connect(NatsSettings(url=clean_nats.connected_url.geturl(), name="borrowed"))
    try:
        await nc.jetstream().account_info()  # nats-py's own request inbox, one per connection
        before = len(nc._subs)
        client = Client(nc)
        await client.list()
        await client.workers()
        for _ in range(3):  # each rebuild made a publisher and a projector of its own
            await client.rebuild_projections()
        await client.list(status="running")
        await client.close()
        assert not nc.is_closed  # not the client's to close
        assert len(nc._subs) == before
    finally:
        await nc.close()


async def test_connect_uses_the_url_and_closes(nats_url: str) -> None:
    async with Client.connect(nats_url) as client:
        assert client.url == nats_url
        assert not client.nc.is_closed
    assert client.nc.is_closed
    client = await Client.connect(nats_url)
    await client.close()
    assert client.nc.is_closed


async def test_an_unreachable_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETWORK_NATS_URL", "nats://127.0.0.1:1")
    with pytest.raises(
        ServerUnavailable, match=r"cannot reach the NATS server at nats://127\.0\.0\.1:1"
    ):
        async with Client.connect():
            pass
