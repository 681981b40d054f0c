# ruff: noqa: F811  (the ``rig`` fixture, imported, is every test's parameter)
"""Definitions by name and version, and schedules, end to end: ``sdk.Client`` and the ticker
on a real nats-server with a real engine, the in-test runner standing in for workers."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from actors.scheduler import CONSUMER, Ticker, run_id
from events import subjects
from events.catalog import WorkflowStarted
from events.connection import NatsSettings, connect
from events.definition_store import DefinitionConflict, DefinitionNotFound
from events.errors import InvalidWorkflow
from events.schedule_store import ScheduleEntry, ScheduleStore, TickDue
from sdk.errors import InvalidArgument
from tests.engine_harness import running_engine, succeed
from tests.eventually import assert_eventually
from tests.integration.test_control import Rig, a_hangs, rig  # noqa: F401  (the fixture)


def flow(name: str, echo: str, **extra: object) -> dict[str, object]:
    return {"name": name, "jobs": {"a": {"run": f"echo {echo}"}}, **extra}


async def started_runs(
    rig: Rig,
    schedule: str,
) -> dict[datetime, list[str]]:
    """The runs a schedule started: tick -> ids of the WorkflowStarted events for it."""
    runs: dict[datetime, list[str]] = {}
    prefix = f"schedule:{schedule}:"
    for recorded in await rig.store.read(subjects.events_of_type("WorkflowStarted")):
        event = recorded.event
        assert isinstance(event, WorkflowStarted)
        key = event.idempotency_key or ""
        if key.startswith(prefix):
            tick = datetime.fromisoformat(key[len(prefix) :])
            runs.setdefault(tick, []).append(event.workflow_id)
    return runs


async def _only_run_started(rig: Rig, schedule: str, tick: datetime) -> bool:
    return list(await started_runs(rig, schedule)) == [tick]


@contextlib.asynccontextmanager
async def tickers(nats_url: str, count: int, **options: float) -> AsyncIterator[list[Ticker]]:
    """``count`` tickers, each on a connection of its own (as in separate servers)."""
    connections = [await connect(NatsSettings(url=nats_url, name=f"t{i}")) for i in range(count)]
    started = [Ticker(nc, **options) for nc in connections]  # type: ignore[arg-type]
    try:
        for ticker in started:
            await ticker.start()
        yield started
    finally:
        for ticker in started:
            await ticker.stop()
        for nc in connections:
            await nc.close()


# --- definitions by name and version ----------------------------------------------------------


async def test_definitions_are_registered_by_version_and_run_by_name(rig: Rig) -> None:
    await rig.start(a_hangs)
    client = rig.client
    first, created = await client.register_definition(flow("deploy", "one"))
    assert (first.reference(), created) == ("deploy@1", True)
    again, created = await client.register_definition(flow("deploy", "one"))
    assert (again.reference(), created) == ("deploy@1", False)
    second, created = await client.register_definition(flow("deploy", "two"))
    assert (second.reference(), created) == ("deploy@2", True)
    # An explicit version: new, the same again (a no-op), then other content (refused).
    assert (await client.register_definition(flow("deploy", "x", version=7)))[0].version == 7
    assert (await client.register_definition(flow("deploy", "x", version=7)))[1] is False
    with pytest.raises(DefinitionConflict, match="deploy@7 is registered already"):
        await client.register_definition(flow("deploy", "y", version=7))
    assert [d.version for d in await client.definition_versions("deploy")] == [1, 2, 7]
    assert [(d.reference(), n) for d, n in await client.definitions()] == [("deploy@7", 3)]

    latest = await client.start("deploy")
    pinned = await client.start("deploy@1")
    for handle, version, echo in ((latest, 7, "x"), (pinned, 1, "one")):
        history = await rig.until(handle.workflow_id, "job.a.JobQueued")
        started = history[0].event
        assert isinstance(started, WorkflowStarted)
        assert (started.definition.version, started.definition.jobs["a"].run) == (
            version, f"echo {echo}"
        )  # fmt: skip
        assert (await client.status(handle.workflow_id)).version == version

    # A newer version changes nothing for a run in progress: its definition is its own.
    await client.register_definition(flow("deploy", "three"))
    view = await client.status(pinned.workflow_id)
    assert (view.version, view.status) == (1, "running")
    history = await rig.history(pinned.workflow_id)
    assert history[0].event.definition.jobs["a"].run == "echo one"  # type: ignore[union-attr]

    with pytest.raises(DefinitionNotFound, match=r"deploy@5 is not registered \(registered: "):
        await client.start("deploy@5")
    with pytest.raises(DefinitionNotFound, match="no definition named 'nothing'"):
        await client.start("nothing")
    with pytest.raises(InvalidWorkflow, match="cannot read"):
        await client.start("no/such/file.yaml")


async def test_an_existing_file_wins_over_a_registered_name(
    rig: Rig,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await rig.start(succeed)
    await rig.client.register_definition(flow("local", "registered"))
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    Path("local").write_text(  # noqa: ASYNC240
        "name: fromfile\njobs:\n  a: {run: echo file}\n"
    )
    handle = await rig.client.start("local")
    assert (await handle.wait(timeout=15)).name == "fromfile"


# --- schedules --------------------------------------------------------------------------------


async def test_every_tick_starts_exactly_one_run_with_two_servers(
    rig: Rig,
    nats_url: str,
) -> None:
    await rig.start(succeed)
    # A second server: its own connection, engine (sharing the partitions) and ticker.
    second = await connect(NatsSettings(url=nats_url, name="second-server"))
    engine = await running_engine(second, rig.dispatcher)
    often = flow("often", "tick", schedule=[{"every": "1s"}])
    entry, changed = await rig.client.add_schedule(often, inputs={})
    assert changed and entry.next_tick is not None
    assert (await rig.client.add_schedule(often))[1] is False
    async with tickers(nats_url, 2), contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(second.close)
        stack.push_async_callback(engine.stop)

        async def four_ticks() -> dict[datetime, list[str]]:
            runs = await started_runs(rig, "often")
            assert len(runs) >= 4, runs
            return runs

        runs = await assert_eventually(four_ticks, timeout=20)
    ticks = sorted(runs)
    # One run per tick, none lost: consecutive seconds from the first tick armed.
    assert ticks[0] == entry.next_tick
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)] == [1.0] * (
        len(ticks) - 1
    )
    assert all(ids == [run_id("often", tick)] for tick, ids in runs.items())
    listed = await rig.client.schedule("often")
    assert listed.last_tick is not None and listed.last_tick >= ticks[-1]
    assert listed.next_tick is not None and listed.next_tick > listed.last_tick


async def test_pause_resume_and_delete(rig: Rig, nats_url: str) -> None:
    await rig.start(succeed)
    client = rig.client
    await client.add_schedule(flow("pausable", "p", schedule=[{"every": "1s"}]))
    async with tickers(nats_url, 1):
        await assert_eventually(lambda: _runs_at_least(rig, "pausable", 1), timeout=15)
        assert await client.pause_schedule("pausable", by="ops") is True
        assert await client.pause_schedule("pausable") is False
        before = set(await started_runs(rig, "pausable"))
        await a_tick_handled_after(rig, await last_command(rig))
        # At most the tick handled while the pause was being written slipped through.
        assert len(set(await started_runs(rig, "pausable")) - before) <= 1
        paused = await client.schedule("pausable")
        assert (paused.paused, paused.paused_by) == (True, "ops")
        settled = set(await started_runs(rig, "pausable"))

        assert await client.resume_schedule("pausable") is True
        assert await client.resume_schedule("pausable") is False
        resumed = await client.schedule("pausable")
        assert resumed.next_tick is not None

        async def ticking_again() -> bool:
            new = set(await started_runs(rig, "pausable")) - settled
            assert resumed.next_tick is not None
            # The run of the tick handled last before the pause may be appended by the engine
            # only now (the ticker sends its start; the engine appends it): at most that one.
            late = {tick for tick in new if tick < resumed.next_tick}
            assert len(late) <= 1 and new - late, (new, resumed.next_tick)
            return True

        await assert_eventually(ticking_again, timeout=15)
        await client.delete_schedule("pausable")
        assert [e.name for e in await client.schedules()] == []
        left = set(await started_runs(rig, "pausable"))
        # Its pending tick fires and is dropped: no run after the one a tick in flight started.
        await a_tick_handled_after(rig, await last_command(rig))
        assert len(set(await started_runs(rig, "pausable")) - left) <= 1
    with pytest.raises(Exception, match="no schedule named 'pausable'"):
        await client.delete_schedule("pausable")
    with pytest.raises(InvalidArgument, match="has no schedule"):
        await client.add_schedule(flow("plain", "p"))


async def last_command(rig: Rig) -> int:
    return int((await rig.nc.jetstream().stream_info(subjects.COMMANDS_STREAM)).state.last_seq)


async def a_tick_handled_after(rig: Rig, seq: int) -> None:
    """Wait until a tick fired after stream sequence ``seq`` was handled and acknowledged."""

    async def handled() -> bool:
        info = await rig.nc.jetstream().consumer_info(subjects.COMMANDS_STREAM, CONSUMER)
        assert info.ack_floor is not None and info.ack_floor.stream_seq > seq, info
        return info.num_pending == 0 and info.num_ack_pending == 0

    await assert_eventually(handled, timeout=15)


async def _runs_at_least(
    rig: Rig,
    schedule: str,
    count: int,
) -> bool:
    runs = await started_runs(rig, schedule)
    assert len(runs) >= count, runs
    return True


async def test_a_ticker_killed_before_its_ack_neither_loses_nor_repeats_the_tick(
    rig: Rig,
    nats_url: str,
) -> None:
    await rig.start(succeed)
    await rig.client.add_schedule(flow("sturdy", "s", schedule=[{"every": "1s"}]))
    js = rig.nc.jetstream()
    ticker = Ticker(rig.nc, ack_wait=1.0)
    # Take the ticker's consumer as it would, handle the tick, and "die" before acknowledging.
    await js.add_consumer(
        subjects.COMMANDS_STREAM,
        durable_name=CONSUMER,
        ack_wait=1.0,
        filter_subject=subjects.SCHEDULE_TICKS,
        ack_policy="explicit",
    )
    sub = await js.pull_subscribe_bind(CONSUMER, stream=subjects.COMMANDS_STREAM)
    [arm] = await sub.fetch(1, timeout=10)  # the add's request to arm the first tick
    assert arm.subject == subjects.schedule_arm("sturdy")
    await ticker.handle(arm)
    [msg] = await sub.fetch(1, timeout=10)
    assert msg.subject == subjects.schedule_tick_fire("sturdy")
    tick = TickDue.model_validate_json(msg.data)
    plan = await ticker.tick(tick)
    assert plan is not None and plan.run == tick.due
    await sub.unsubscribe()
    # A ticker started afresh gets the unacknowledged tick again: it starts no second run.
    async with tickers(nats_url, 1, ack_wait=1.0):

        async def redelivered_and_went_on() -> dict[datetime, list[str]]:
            info = await js.consumer_info(subjects.COMMANDS_STREAM, CONSUMER)
            assert (
                info.ack_floor is not None
                and info.ack_floor.stream_seq >= msg.metadata.sequence.stream
            )
            runs = await started_runs(rig, "sturdy")
            assert len(runs) >= 3, runs
            return runs

        runs = await assert_eventually(redelivered_and_went_on, timeout=20)
    assert runs[tick.due] == [run_id("sturdy", tick.due)]
    assert all(len(ids) == 1 for ids in runs.values())
    ticks = sorted(runs)
    assert ticks[0] == tick.due
    assert all((b - a).total_seconds() == 1.0 for a, b in itertools.pairwise(ticks))


async def test_ticks_missed_while_no_ticker_ran_follow_the_catch_up_policy(
    rig: Rig,
) -> None:
    await rig.start(succeed)
    for name, policy in (("caught", "last"), ("skipped", "skip")):
        await rig.client.add_schedule(
            flow(name, name, schedule=[{"every": "1h", "catch_up": policy}])
        )
    # Each tick handled 3.5 hours after it was due, as after a night with everything down.
    for name in ("caught", "skipped"):
        entry = await rig.client.schedule(name)
        assert entry.next_tick is not None
        moment = entry.next_tick + timedelta(hours=3, minutes=30)
        late = Ticker(rig.nc, clock=lambda moment=moment: moment)  # type: ignore[misc]
        plan = await late.tick(TickDue(name=name, generation=entry.generation, due=entry.next_tick))
        assert plan is not None and plan.missed
        assert plan.next == entry.next_tick + timedelta(hours=4)
        after = await rig.client.schedule(name)
        assert after.next_tick == plan.next
        if name == "caught":  # the latest missed tick runs, the others do not
            assert plan.run == entry.next_tick + timedelta(hours=3)
            # The engine appends the run's start after the tick has sent it.
            await assert_eventually(
                functools.partial(_only_run_started, rig, "caught", plan.run), timeout=15
            )
            assert after.last_run == run_id(name, plan.run)
        else:  # none runs
            assert plan.run is None
            assert (after.skipped, after.last_run) == (1, None)
            assert after.note is not None and "catch_up: skip" in after.note
    assert await started_runs(rig, "skipped") == {}


async def test_overlap_skip_starts_nothing_while_the_previous_run_runs(
    rig: Rig,
    nats_url: str,
) -> None:
    await rig.start(a_hangs)  # every run hangs in job a
    await rig.client.add_schedule(
        flow("single", "s", schedule=[{"every": "1s", "overlap": "skip"}])
    )
    async with tickers(nats_url, 1):
        await assert_eventually(lambda: _runs_at_least(rig, "single", 1), timeout=15)

        async def skipped_twice() -> ScheduleEntry:
            entry = await rig.client.schedule("single")
            assert entry.skipped >= 2, entry
            return entry

        entry = await assert_eventually(skipped_twice, timeout=15)
    assert entry.note is not None and "still running" in entry.note
    runs = await started_runs(rig, "single")
    assert len(runs) == 1 and entry.last_run == next(iter(runs.values()))[0]
    assert (await rig.client.status(entry.last_run)).status == "running"


async def test_an_older_tick_armed_by_a_racing_request_does_not_end_the_schedule(
    rig: Rig,
    nats_url: str,
) -> None:
    await rig.start(succeed)
    await rig.client.add_schedule(flow("raced", "r", schedule=[{"every": "1s"}]))
    async with tickers(nats_url, 1):
        await assert_eventually(lambda: _runs_at_least(rig, "raced", 1), timeout=15)
        entry = await rig.client.schedule("raced")
        assert entry.last_tick is not None
        # What an arm request handled while a tick was being handled does: it arms the tick
        # the entry named before, replacing the pending next one. That tick fires as stale.
        await ScheduleStore(rig.nc.jetstream()).arm(entry, entry.last_tick)
        seen = len(await started_runs(rig, "raced"))
        await assert_eventually(lambda: _runs_at_least(rig, "raced", seen + 2), timeout=15)


async def test_a_schedule_added_in_a_namespace_starts_its_runs_there(
    rig: Rig, nats_url: str
) -> None:
    await rig.start(succeed)
    team = rig.client.in_namespace("team-sched")
    entry, _ = await team.add_schedule(flow("teamly", "tick", schedule=[{"every": "1s"}]))
    assert entry.namespace == "team-sched"
    async with tickers(nats_url, 1):

        async def one_run() -> list[str]:
            runs = await started_runs(rig, "teamly")
            return [wf for ids in runs.values() for wf in ids]

        [wf, *_] = await assert_eventually(one_run, timeout=15)
    assert (await team.status(wf)).namespace == "team-sched"
    started = await team.history(wf)
    assert isinstance(started[0].event, WorkflowStarted)
    assert wf in {run_id("teamly", tick, "team-sched") for tick in await _ticks(rig, "teamly")}
    await team.delete_schedule("teamly")


async def _ticks(rig: Rig, schedule: str) -> list[datetime]:
    return list(await started_runs(rig, schedule))
