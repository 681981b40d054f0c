"""Namespaces on a real nats-server, with a real engine, projector and workers: two namespaces'
workflows do not see each other in list, status or any command by id; a worker of one namespace
never claims another's jobs; rate limits and idempotency keys are per namespace."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from nats.aio.client import Client as NATS

from actors.engine import Engine
from actors.engine.batch import _NOT_FOUND_TRIES, Batch
from actors.engine.quotas import Quotas
from events import subjects
from events.base import RecordedEvent
from events.catalog import JobStarted, JobSucceeded, WorkflowDeleted, WorkflowStarted
from events.errors import WorkflowNotFound
from events.quotas import QuotaExceeded
from events.requests import StartAnswer, StartRequest, workflow_id_for
from events.store import EventStore
from projections.projector import Projector
from projections.views import WorkflowView
from sdk.cli import main
from sdk.client import Client
from sdk.client.scope import NamespaceScope
from sdk.errors import WorkflowNotStarted
from sdk.worker import Worker
from tests.engine_harness import RecordingDispatcher, running_engine
from tests.eventually import assert_eventually
from tests.integration.test_client import FAST_PROJECTOR
from tests.jobs_harness import fast_config, running


def flow(label: str) -> dict[str, object]:
    return {"name": "ns-flow", "jobs": {"a": {"run": "echo a", "labels": [label]}}}


@dataclass
class Stack:
    nc: NATS
    engine: Engine
    default: Client
    team_a: Client
    team_b: Client


@pytest.fixture
async def stack(clean_nats: NATS) -> AsyncIterator[Stack]:
    engine = await running_engine(clean_nats, RecordingDispatcher())
    projector = Projector(clean_nats, settings=FAST_PROJECTOR)
    await projector.start()
    default = Client(clean_nats)
    try:
        yield Stack(
            clean_nats,
            engine,
            default,
            default.in_namespace("team-a"),
            default.in_namespace("team-b"),
        )
    finally:
        await projector.stop()
        await engine.stop()


async def _queued(client: Client, workflow_id: str) -> WorkflowView | None:
    """The workflow's view once started (its job queued), else None."""
    try:
        view = await client.status(workflow_id)
    except WorkflowNotStarted:
        return None
    return view if view.jobs["a"].status == "queued" else None


def label() -> str:
    return f"ns-{uuid.uuid4().hex[:8]}"


async def test_namespaces_do_not_see_each_others_workflows(stack: Stack, nats_url: str) -> None:
    lb = label()
    worker_a = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-a"))
    worker_b = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-b"))
    async with running(worker_a, worker_b):
        a = await stack.team_a.start(flow(lb))
        b = await stack.team_b.start(flow(lb))
        assert (await a.wait(timeout=15)).namespace == "team-a"
        assert (await b.wait(timeout=15)).namespace == "team-b"
    started = (await stack.team_a.history(a.workflow_id))[0].event
    assert isinstance(started, WorkflowStarted) and started.namespace == "team-a"

    # status, history, exists and commands by id: another namespace's workflow is not there
    for other, wf in ((stack.team_b, a.workflow_id), (stack.default, a.workflow_id)):
        with pytest.raises(WorkflowNotFound):
            await other.status(wf)
        with pytest.raises(WorkflowNotFound):
            await other.history(wf)
        with pytest.raises(WorkflowNotFound):
            await other.cancel(wf)
        assert await other.exists(wf) is False
    assert await stack.team_a.exists(a.workflow_id)

    async def listed() -> bool:
        rows_a = await stack.team_a.list()
        rows_b = await stack.team_b.list()
        return [r.workflow_id for r in rows_a] == [a.workflow_id] and [
            r.workflow_id for r in rows_b
        ] == [b.workflow_id]

    await assert_eventually(listed, timeout=10)
    assert [r.namespace for r in await stack.team_a.list(status="succeeded")] == ["team-a"]
    assert [r.workflow_id for r in await stack.team_a.list(name="ns-flow")] == [a.workflow_id]
    assert await stack.team_a.list(status="running") == []
    assert await stack.default.list(name="ns-flow") == []  # neither is the default's
    # filters answered from the secondary keys (both workflows need the label): per namespace too
    assert [r.workflow_id for r in await stack.team_a.list(labels=[lb])] == [a.workflow_id]
    assert [r.workflow_id for r in await stack.team_b.list(labels=[lb])] == [b.workflow_id]
    assert await stack.default.list(labels=[lb]) == []


async def test_a_worker_claims_only_its_namespaces_jobs(stack: Stack, nats_url: str) -> None:
    lb = label()
    a_worker = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-a"))
    async with running(a_worker):
        b_run = await stack.team_b.start(flow(lb))
        default_run = await stack.default.start(flow(lb))
        a_run = await stack.team_a.start(flow(lb))
        assert (await a_run.wait(timeout=15)).status == "succeeded"
        # team-a's worker serves the same labels, yet never takes team-b's or the default's job
        for client, run in ((stack.team_b, b_run), (stack.default, default_run)):
            view = await assert_eventually(functools.partial(_queued, client, run.workflow_id))
            assert view.jobs["a"].status == "queued", view
            assert view.jobs["a"].waiting_for is not None
            assert view.jobs["a"].waiting_for.live_workers == 0
        workers = await stack.team_a.workers()
        assert [w.namespace for w in workers] == ["team-a"]
        assert await stack.team_b.workers() == []
        assert [ls.namespace for ls in workers.unserved] == []
    b_worker = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-b"))
    async with running(b_worker):
        assert (await b_run.wait(timeout=15)).status == "succeeded"
    history = await stack.team_b.history(b_run.workflow_id)
    claims = [r.event for r in history if isinstance(r.event, JobStarted)]
    assert [c.worker_id for c in claims] == [b_worker.worker_id]
    assert (await stack.default.status(default_run.workflow_id)).jobs["a"].status == "queued"
    await stack.default.cancel(default_run.workflow_id)


async def test_ids_and_idempotency_keys_are_per_namespace(stack: Stack) -> None:
    first = await stack.team_a.start(flow(label()), idempotency_key="order-42")
    again = await stack.team_a.start(flow(label()), idempotency_key="order-42")
    other = await stack.team_b.start(flow(label()), idempotency_key="order-42")
    assert first.workflow_id == again.workflow_id
    assert other.workflow_id != first.workflow_id
    assert workflow_id_for("order-42") not in (first.workflow_id, other.workflow_id)
    # The engine refuses an id another namespace has, whoever sends the start.

    async def started() -> bool:
        try:
            return bool(await stack.team_a.history(first.workflow_id))
        except WorkflowNotFound:  # (WorkflowNotStarted: its start waits for the engine)
            return False

    await assert_eventually(started, timeout=10)
    inbox = stack.nc.new_inbox()
    answers = await stack.nc.subscribe(inbox, max_msgs=1)
    request = StartRequest(
        workflow_id=first.workflow_id,
        definition=flow(label()),
        namespace="team-b",
        reply_to=inbox,
    )
    await stack.nc.jetstream().publish(request.subject(), request.model_dump_json().encode())
    answer = StartAnswer.model_validate_json((await answers.next_msg(timeout=10)).data)
    assert answer.accepted is False
    assert answer.error is not None and "taken in another namespace" in answer.error
    assert (await stack.team_a.status(first.workflow_id)).namespace == "team-a"
    for run, client in ((first, stack.team_a), (other, stack.team_b)):
        await client.cancel(run.workflow_id)


async def test_rate_limits_are_per_namespace(stack: Stack, nats_url: str) -> None:
    lb = label()
    await stack.team_a.set_rate_limit(limit=1, per=3600, labels=(lb,))
    assert [v.name for v in await stack.team_a.rate_limits()] == [lb]
    assert await stack.team_b.rate_limits() == []
    assert lb not in [v.name for v in await stack.default.rate_limits()]
    worker_a = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-a"))
    worker_b = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-b"))
    async with running(worker_a, worker_b):
        a_runs = [await stack.team_a.start(flow(lb)) for _ in range(2)]
        b_runs = [await stack.team_b.start(flow(lb)) for _ in range(2)]
        for run in b_runs:  # team-b has no limit: both run
            assert (await run.wait(timeout=15)).status == "succeeded"

        async def one_of_a_ran() -> bool:
            try:
                views = [await stack.team_a.status(r.workflow_id) for r in a_runs]
            except WorkflowNotStarted:
                return False
            return sorted(v.status for v in views) == ["running", "succeeded"]

        await assert_eventually(one_of_a_ran, timeout=15)
        [view] = await stack.team_a.rate_limits()
        assert (view.started_in_window, view.full) == (1, True)
        assert await stack.team_a.delete_rate_limit(labels=(lb,)) is True
        for run in a_runs:
            assert (await run.wait(timeout=15)).status == "succeeded"


async def test_the_cli_takes_namespace_as_option_and_variable(stack: Stack, nats_url: str) -> None:
    before = await stack.default.start(flow(label()))  # the default's: first in the log
    run = await stack.team_a.start(flow(label()))
    runner = CliRunner()

    async def started() -> bool:
        try:
            await stack.default.status(before.workflow_id)
            return bool(await stack.team_a.status(run.workflow_id))
        except WorkflowNotStarted:
            return False

    await assert_eventually(started, timeout=10)

    def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        done = runner.invoke(main, [*args, "--nats", nats_url], env=env)
        return done.exit_code, done.output

    code, out = await asyncio.to_thread(cli, "status", run.workflow_id, "--namespace", "team-a")
    assert code == 0 and run.workflow_id in out, out
    code, out = await asyncio.to_thread(
        cli, "status", run.workflow_id, env={"JETWORK_NAMESPACE": "team-a"}
    )
    assert code == 0, out
    code, out = await asyncio.to_thread(cli, "status", run.workflow_id)
    assert code == 1 and "not found" in out, out
    # watch: the namespace's workflows' events only; another's workflow is not found
    code, out = await asyncio.to_thread(
        cli, "watch", "--type", "WorkflowStarted", "--from-start", "--count", "1", "--json",
        "--namespace", "team-a",
    )  # fmt: skip
    assert code == 0 and orjson.loads(out.splitlines()[-1])["subject"].split(".")[2] == (
        run.workflow_id
    ), out
    code, out = await asyncio.to_thread(cli, "watch", "--workflow", run.workflow_id)
    assert code == 1 and "not found" in out, out
    await stack.default.cancel(before.workflow_id)
    code, out = await asyncio.to_thread(cli, "list", "--namespace", "bad.name")
    assert code == 2 and "not a valid namespace" in out, out
    code, out = await asyncio.to_thread(cli, "list", env={"JETWORK_NAMESPACE": "bad name"})
    assert code == 1 and "JETWORK_NAMESPACE" in out, out
    nowhere = await asyncio.to_thread(  # refused before connecting: no server is asked
        runner.invoke, main, ["list", "--nats", "nats://127.0.0.1:1"],
        env={"JETWORK_NAMESPACE": "bad name"},
    )  # fmt: skip
    assert nowhere.exit_code == 1 and "JETWORK_NAMESPACE" in nowhere.output, nowhere.output
    await stack.team_a.cancel(run.workflow_id)


# --- quotas -----------------------------------------------------------------------------------


def gated(lb: str) -> dict[str, object]:
    """A workflow whose one job waits for a file to exist: it runs until the test lets it end."""
    return {
        "name": "gated",
        "inputs": {"gate": {"required": True}},
        "jobs": {
            "a": {
                "run": "while [ ! -e ${{ inputs.gate }} ]; do sleep 0.05; done",
                "labels": [lb],
            }
        },
    }


async def test_a_quota_of_one_running_workflow_makes_the_next_start_wait(
    stack: Stack, nats_url: str, tmp_path: Path
) -> None:
    ns = f"q-{uuid.uuid4().hex[:6]}"
    client, lb = stack.default.in_namespace(ns), label()
    await client.set_quota(ns, max_running_workflows=1)
    gate_1, gate_2 = tmp_path / "one", tmp_path / "two"
    worker = Worker(
        fast_config(nats_url, labels=frozenset([lb]), namespace=ns, max_concurrent_jobs=4)
    )
    async with running(worker):
        first = await client.start(gated(lb), inputs={"gate": str(gate_1)})

        async def first_running() -> bool:
            try:
                view = await client.status(first.workflow_id)
            except WorkflowNotFound:
                return False
            return view.jobs["a"].status == "running"

        await assert_eventually(first_running, timeout=15)
        second = await client.start(gated(lb), inputs={"gate": str(gate_2)})
        gate_2.touch()  # the second could end at once: only the quota holds it back
        # Held back: its start waits in the commands stream while the first runs.
        for _ in range(3):
            with pytest.raises(WorkflowNotStarted):
                await client.status(second.workflow_id)
            [row] = await client.quotas()
            assert (row.namespace, row.running_workflows) == (ns, 1)
            await asyncio.sleep(0.5)  # (time for the engine to try again: it must not start)
        gate_1.touch()
        assert (await first.wait(timeout=15)).status == "succeeded"
        second_view = await second.wait(timeout=15)
        assert second_view.status == "succeeded"
    first_end = (await client.status(first.workflow_id)).ended_at
    assert first_end is not None and second_view.started_at is not None
    assert second_view.started_at >= first_end
    await assert_eventually(
        lambda: _running_workflows(client, ns, 0), timeout=10, message="place not given back"
    )
    assert await client.delete_quota(ns) is True


async def _running_workflows(client: Client, ns: str, count: int) -> bool:
    return [(r.namespace, r.running_workflows) for r in await client.quotas()] == [(ns, count)]


async def test_a_refusing_quota_refuses_the_start_with_a_clear_error(
    stack: Stack, nats_url: str, tmp_path: Path
) -> None:
    ns = f"q-{uuid.uuid4().hex[:6]}"
    client, lb = stack.default.in_namespace(ns), label()
    await client.set_quota(ns, max_running_workflows=1, over_quota="refuse")
    first = await client.start(gated(lb), inputs={"gate": str(tmp_path / "never")})
    with pytest.raises(QuotaExceeded, match=f"namespace '{ns}' runs 1 workflow") as refused:
        await client.start(gated(lb), inputs={"gate": str(tmp_path / "never")})
    assert "jetwork namespaces set" in str(refused.value)
    # Another namespace is not bound by it.
    other = await stack.team_a.start(gated(lb), inputs={"gate": str(tmp_path / "never")})
    wf_file = tmp_path / "quick.yaml"
    wf_file.write_text("name: quick\njobs:\n  a:\n    run: 'true'\n")
    done = await asyncio.to_thread(
        CliRunner().invoke, main, ["run", str(wf_file), "--namespace", ns, "--nats", nats_url]
    )
    assert done.exit_code == 1 and "quota" in done.output, done.output
    await client.cancel(first.workflow_id)
    await stack.team_a.cancel(other.workflow_id)

    async def admitted_again() -> bool:
        try:
            run = await client.start(flow(lb))
        except QuotaExceeded:
            return False
        await client.cancel(run.workflow_id)
        return True

    # The cancelled workflow's place is given back: a start is admitted again.
    await assert_eventually(admitted_again, timeout=15, interval=0.5)
    await client.delete_quota(ns)


async def test_a_quota_of_running_jobs_holds_across_workers(stack: Stack, nats_url: str) -> None:
    ns = f"q-{uuid.uuid4().hex[:6]}"
    client, lb = stack.default.in_namespace(ns), label()
    await client.set_quota(ns, max_running_jobs=2)
    wide = {
        "name": "wide",
        "jobs": {f"j{n}": {"run": "sleep 0.3", "labels": [lb]} for n in range(6)},
    }
    workers = [
        Worker(fast_config(nats_url, labels=frozenset([lb]), namespace=ns, max_concurrent_jobs=4))
        for _ in range(2)
    ]
    async with running(*workers):
        run = await client.start(wide)
        assert (await run.wait(timeout=30)).status == "succeeded"
    history = await client.history(run.workflow_id)
    spans = []
    for name in wide["jobs"]:  # type: ignore[attr-defined]
        start = next(
            r.event.started_at
            for r in history
            if isinstance(r.event, JobStarted) and r.event.job == name
        )
        end = next(
            r.event.ended_at
            for r in history
            if isinstance(r.event, JobSucceeded) and r.event.job == name
        )
        spans.append((start, end))
    most = max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)
    assert most <= 2, spans
    assert await client.delete_quota(ns) is True


async def test_namespaces_cli_sets_lists_and_deletes_quotas(stack: Stack, nats_url: str) -> None:
    ns = f"q-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str]:
        done = runner.invoke(main, [*args, "--nats", nats_url])
        return done.exit_code, done.output

    code, out = await asyncio.to_thread(
        cli, "namespaces", "set", ns, "--max-running-workflows", "3", "--over-quota", "refuse"
    )
    assert code == 0 and "at most 3 running workflows" in out, out
    code, out = await asyncio.to_thread(cli, "namespaces", "--json")
    assert code == 0, out
    [row] = [r for r in orjson.loads(out)["namespaces"] if r["namespace"] == ns]
    assert row["max_running_workflows"] == 3 and row["over_quota"] == "refuse"
    assert row["running_workflows"] == 0 and row["max_running_jobs"] is None
    code, out = await asyncio.to_thread(cli, "namespaces", "set", ns)
    assert code == 2 and "--max-running-workflows" in out, out
    code, out = await asyncio.to_thread(
        cli, "namespaces", "set", "bad.name", "--max-running-jobs", "1"
    )
    assert code == 2 and "not a valid namespace" in out, out
    code, out = await asyncio.to_thread(cli, "namespaces", "delete", ns)
    assert code == 0 and "quota lifted" in out, out
    code, out = await asyncio.to_thread(cli, "namespaces", "delete", ns)
    assert code == 0 and "had no quota" in out, out


async def test_engines_racing_for_a_quota_never_exceed_it(clean_nats: NATS) -> None:
    """Four engines' quota books (as four engines owning different partitions have) admit 24
    new workflows at once against a quota of 3: exactly 3 are admitted; once they end, others."""
    ns = f"q-{uuid.uuid4().hex[:6]}"
    await Client(clean_nats).set_quota(ns, max_running_workflows=3)
    books = [Quotas(clean_nats, EventStore(clean_nats)) for _ in range(4)]
    ids = [f"wf-race-{ns}-{n}" for n in range(24)]
    held = await asyncio.gather(*(books[n % 4].enter(ns, wf) for n, wf in enumerate(ids)))
    admitted = [wf for wf, verdict in zip(ids, held, strict=True) if verdict is None]
    assert len(admitted) == 3, held
    assert all(verdict is None or verdict.wait for verdict in held)
    [row] = [r for r in await Client(clean_nats).quotas() if r.namespace == ns]
    assert row.running_workflows == 3
    # Admitted again: a redelivered start keeps its place; the quota still holds the others.
    assert await books[1].enter(ns, admitted[0]) is None
    assert await books[2].enter(ns, ids[-1] + "-x") is not None
    for n, wf in enumerate(admitted):
        await books[n % 4].leave(ns, wf)
    again = await asyncio.gather(*(books[n % 4].enter(ns, wf) for n, wf in enumerate(ids)))
    assert sum(verdict is None for verdict in again) == 3


async def test_a_start_waiting_for_its_quota_can_be_cancelled(
    stack: Stack, nats_url: str, tmp_path: Path
) -> None:
    ns = f"q-{uuid.uuid4().hex[:6]}"
    client, lb = stack.default.in_namespace(ns), label()
    await client.set_quota(ns, max_running_workflows=1)
    gate = tmp_path / "gate"
    worker = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace=ns))
    async with running(worker):
        first = await client.start(gated(lb), inputs={"gate": str(gate)})
        await assert_eventually(functools.partial(_has_started, client, first.workflow_id))
        second = await client.start(gated(lb), inputs={"gate": str(gate)})
        await client.cancel(second.workflow_id)  # its start waits: the cancel is kept for it

        async def start_withdrawn() -> bool:
            try:
                await client.status(second.workflow_id)
            except WorkflowNotStarted:
                return False
            except WorkflowNotFound:
                return True
            return False

        await assert_eventually(start_withdrawn, timeout=15)
        letters = await client.dead_letters()
        assert any(
            "cancelled while its start waited" in letter.reason
            and second.workflow_id in letter.subject
            for letter in letters
        ), letters
        gate.touch()
        assert (await first.wait(timeout=15)).status == "succeeded"
    with pytest.raises(WorkflowNotFound):
        await client.history(second.workflow_id)  # it never started
    await client.delete_quota(ns)


async def _has_started(client: Client, workflow_id: str) -> bool:
    try:
        return bool(await client.status(workflow_id))
    except WorkflowNotStarted:
        return False


def _workflow_of(recorded: RecordedEvent) -> str:
    return recorded.subject.split(".")[2]


async def test_subscribe_yields_only_its_namespaces_events(stack: Stack, nats_url: str) -> None:
    lb = label()
    seen: list[RecordedEvent] = []
    # A subscription to an id before its workflow starts, in another namespace than the client's.
    b_id = workflow_id_for("later", namespace="team-b")
    early: list[RecordedEvent] = []

    async def collect(into: list[RecordedEvent], events: AsyncIterator[RecordedEvent]) -> None:
        async for recorded in events:
            into.append(recorded)

    live = asyncio.create_task(collect(seen, stack.team_a.subscribe()))
    by_id = asyncio.create_task(collect(early, stack.team_a.subscribe(workflow_id=b_id)))
    worker_a = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-a"))
    worker_b = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-b"))
    worker_d = Worker(fast_config(nats_url, labels=frozenset([lb])))
    try:
        async with running(worker_a, worker_b, worker_d):
            # The live subscription is in place once it has seen a workflow of its own start.
            warm = await stack.team_a.start(flow(lb))

            async def warmed() -> bool:
                return any(_workflow_of(r) == warm.workflow_id for r in seen)

            await assert_eventually(warmed, timeout=15)
            b = await stack.team_b.start(flow(lb), idempotency_key="later")
            assert b.workflow_id == b_id
            d = await stack.default.start(flow(lb))
            assert (await b.wait(timeout=15)).status == "succeeded"
            assert (await d.wait(timeout=15)).status == "succeeded"
            a = await stack.team_a.start(flow(lb))  # after b's and d's events in the log
            assert (await a.wait(timeout=15)).status == "succeeded"

            async def a_ended() -> bool:
                return any(
                    _workflow_of(r) == a.workflow_id and r.event.event_type == "WorkflowSucceeded"
                    for r in seen
                )

            await assert_eventually(a_ended, timeout=15)
    finally:
        for task in (live, by_id):
            task.cancel()
        await asyncio.gather(live, by_id, return_exceptions=True)
    ours = {warm.workflow_id, a.workflow_id}
    assert {_workflow_of(r) for r in seen} == ours
    assert early == []  # team-b's workflow: nothing of it for team-a, though subscribed by id
    with pytest.raises(WorkflowNotFound):  # now that it has started: not team-a's
        await anext(stack.team_a.subscribe(workflow_id=b_id))

    # From the start, and filtered by type (no WorkflowStarted passes: each workflow looked up).
    for client, expected in ((stack.team_a, ours), (stack.team_b, {b.workflow_id})):
        for event_type in (None, "JobSucceeded"):
            replayed: list[RecordedEvent] = []
            events = client.subscribe(event_type=event_type, from_start=True)
            async with contextlib.aclosing(events):
                async for recorded in events:
                    replayed.append(recorded)
                    done = {_workflow_of(r) for r in replayed if r.event.event_type in _ENDS}
                    if done >= expected:
                        break
            assert {_workflow_of(r) for r in replayed} == expected, (client.namespace, event_type)
    # The default namespace's client: the default's workflow only.
    events = stack.default.subscribe(event_type="WorkflowSucceeded", from_start=True)
    async with contextlib.aclosing(events):
        first = await anext(events)
    assert _workflow_of(first) == d.workflow_id


_ENDS = frozenset({"WorkflowSucceeded", "JobSucceeded"})


async def test_a_scope_looks_each_workflow_up_once(stack: Stack, nats_url: str) -> None:
    lb = label()
    worker_a = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-a"))
    worker_b = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-b"))
    async with running(worker_a, worker_b):
        runs = [await stack.team_a.start(flow(lb)), await stack.team_b.start(flow(lb))]
        for run in runs:
            await run.wait(timeout=15)
    store = EventStore(stack.nc)
    events = [
        e for run in runs for e in await store.read(subjects.workflow_events(run.workflow_id))
    ]
    assert len(events) > 4
    # Without their WorkflowStarted (as a filtered stream sees them): one lookup per workflow.
    unstarted = [r for r in events if not isinstance(r.event, WorkflowStarted)]
    scope = NamespaceScope(store, "team-a")
    admitted = [r for r in unstarted if await scope.admits(r)]
    assert scope.lookups == 2
    assert {_workflow_of(r) for r in admitted} == {runs[0].workflow_id}
    # WorkflowStarted passing first fills the cache: no lookup at all.
    scope = NamespaceScope(store, "team-b")
    admitted = [r for r in events if await scope.admits(r)]
    assert scope.lookups == 0
    assert {_workflow_of(r) for r in admitted} == {runs[1].workflow_id}
    # A bounded cache: a forgotten workflow is looked up again.
    scope = NamespaceScope(store, "team-a", size=1)
    for recorded in unstarted + unstarted:
        await scope.admits(recorded)
    assert scope.lookups == 2 + 2


async def test_a_signal_to_a_workflow_whose_start_waits_is_kept_for_it(
    stack: Stack, nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal (any control) reaching the engine before its workflow's start is decided waits
    with the start, however often it comes back, instead of being dead-lettered as unknown after
    ``_NOT_FOUND_TRIES`` deliveries (a chaos run lost a signal so: the start's append was
    retried while a node was down, the wait then never got its signal)."""
    seen: Counter[str] = Counter()
    unknown = Batch._unknown_workflow

    async def counted(self: Batch, msg: Any, item: Any, workflow_id: str) -> None:
        seen[workflow_id] += 1
        await unknown(self, msg, item, workflow_id)

    monkeypatch.setattr(Batch, "_unknown_workflow", counted)
    ns = f"q-{uuid.uuid4().hex[:6]}"
    client, lb = stack.default.in_namespace(ns), label()
    await client.set_quota(ns, max_running_workflows=1)
    gate = tmp_path / "gate"
    approval = {"name": "approval", "jobs": {"ok": {"wait_for": {"signal": "go", "timeout": "1h"}}}}
    worker = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace=ns))
    async with running(worker):
        first = await client.start(gated(lb), inputs={"gate": str(gate)})
        await assert_eventually(functools.partial(_has_started, client, first.workflow_id))
        second = await client.start(approval)  # waits for the quota
        await client.signal(second.workflow_id, "go", {"by": "ann"}, answer_timeout=0.2)
        await assert_eventually(
            lambda: seen[second.workflow_id] > _NOT_FOUND_TRIES, timeout=15,
            message="the signal came back to the engine more often than an unknown one may",
        )  # fmt: skip
        gate.touch()
        assert (await first.wait(timeout=15)).status == "succeeded"
        view = await second.wait(timeout=15)
    assert view.status == "succeeded" and view.jobs["ok"].outputs == {"by": "ann"}
    assert not any(second.workflow_id in letter.subject for letter in await client.dead_letters())
    await client.delete_quota(ns)


async def test_a_deleted_workflows_tombstone_reaches_its_namespaces_subscribers(
    stack: Stack, nats_url: str
) -> None:
    # The tombstone's WorkflowStarted is purged with the rest of its history: the scope knows
    # the namespace from the tombstone itself (it was dropped for every namespace before).
    lb = label()
    worker = Worker(fast_config(nats_url, labels=frozenset([lb]), namespace="team-b"))
    async with running(worker):
        run = await stack.team_b.start(flow(lb))
        assert (await run.wait(timeout=15)).status == "succeeded"
    await stack.team_b.delete(run.workflow_id, reason="test")
    store = EventStore(stack.nc)
    history = await store.read(subjects.workflow_events(run.workflow_id))
    assert [r.event.event_type for r in history] == ["WorkflowDeleted"]  # the start is purged
    tombstone = history[0]
    assert isinstance(tombstone.event, WorkflowDeleted)
    assert tombstone.event.namespace == "team-b"
    assert await NamespaceScope(store, "team-b").admits(tombstone)
    assert not await NamespaceScope(store, "team-a").admits(tombstone)
    assert not await NamespaceScope(store, None).admits(tombstone)
    # And through a namespaced subscription from the start.
    events = stack.team_b.subscribe(workflow_id=run.workflow_id, from_start=True)
    async with contextlib.aclosing(events):
        first = await asyncio.wait_for(anext(events), 15)
    assert first.event.event_type == "WorkflowDeleted"
