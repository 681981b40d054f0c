"""The projector, the reader and rebuild on a real nats-server, fed by the real engine."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from nats.aio.client import Client as NATS
from structlog.testing import capture_logs

from actors.definitions import parse_workflow
from actors.job import JobState
from actors.workflow import replay
from events import subjects
from events.base import RecordedEvent
from events.catalog import (
    WorkflowCancelled,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowSucceeded,
)
from events.connection import NatsSettings, connect
from events.store import ActorRef, EventStore
from projections import Projector, ProjectorSettings, Views, rebuild, summary, workflow_view
from projections._nats import Direct, Publisher, Stored
from projections.bounds import decode_mark
from projections.index import IndexEntry, IndexWriter, micros, newest
from projections.recent import RecentWriter
from projections.store import INLINE_VIEW, KV_PREFIX, KV_STREAM, ViewStore, Written
from projections.views import JobView, WorkflowView
from tests.engine_harness import (
    InTestRunner,
    Outcome,
    RecordingDispatcher,
    cancel_workflow,
    ended,
    running_engine,
    start_workflow,
    types,
)
from tests.eventually import assert_eventually

FAST = ProjectorSettings(poll_interval=0.1, generation_check=0.1, lease_ttl=2.0, renew_every=0.25)

OK = {
    "name": "diamond",
    "jobs": {
        "a": {"run": "echo a"},
        "b": {"needs": ["a"], "run": "echo ${{ needs.a.outputs.greeting }}"},
        "c": {"needs": ["a"], "run": "echo c"},
        "d": {"needs": ["b", "c"], "run": "echo d"},
    },
}
FLAKY = {"name": "flaky", "jobs": {"flaky": {"run": "x", "retry": {"max_attempts": 3}}}}
BAD = {
    "name": "doomed",
    "jobs": {
        "boom": {"run": "x", "retry": {"max_attempts": 2}},
        "after": {"needs": ["boom"], "run": "y"},
        "cleanup": {"needs": ["boom"], "if": "${{ always() }}", "run": "z"},
    },
}
STOPPED = {
    "name": "cancellable",
    "jobs": {"long": {"run": "sleep 60"}, "later": {"needs": ["long"], "run": "echo"}},
}


def behaviour(state: JobState) -> Outcome:
    if state.job == "boom":
        return Outcome(error="boom")
    if state.job == "flaky" and state.attempt < 2:
        return Outcome(error="the first attempt fails")
    if state.job == "long":
        return Outcome(hang=True)
    if state.job == "a":
        return Outcome(outputs={"greeting": "hello"})
    return Outcome()


class Rig:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.store = EventStore(nc)
        self.dispatcher = RecordingDispatcher()
        self.runner = InTestRunner(self.store, self.dispatcher, behaviour)

    async def finished(self, wf: str) -> None:
        async def probe() -> bool:
            return ended(await self.history(wf)) is not None

        await assert_eventually(probe, timeout=20, message=f"workflow {wf} never ended")

    async def run(self, wf: str, definition: dict) -> str:
        await start_workflow(self.nc, wf, definition)
        await self.finished(wf)
        return wf

    async def run_cancelled(self, wf: str) -> str:
        await start_workflow(self.nc, wf, STOPPED)
        await assert_eventually(lambda: any(h[0] == wf for h in self.runner.hanging))
        await cancel_workflow(self.nc, wf, reason="changed my mind")

        async def requested() -> bool:
            return "job.long.JobCancelRequested" in types(await self.store.history(wf))

        await assert_eventually(requested)
        _, name, epoch = next(h for h in self.runner.hanging if h[0] == wf)
        await self.runner.confirm_cancelled(wf, name, epoch)
        await self.finished(wf)
        return wf

    async def mixed(self, tag: str = "") -> list[str]:
        """Succeeded, retried, failed and cancelled workflows, all ended."""
        return list(
            await asyncio.gather(
                self.run(f"ok{tag}", OK),
                self.run(f"ok2{tag}", OK),
                self.run(f"flaky{tag}", FLAKY),
                self.run(f"bad{tag}", BAD),
                self.run_cancelled(f"stop{tag}"),
            )
        )

    async def history(self, wf: str) -> list[RecordedEvent]:
        return (await self.store.read_tolerant(subjects.workflow_events(wf))).events

    async def expected(self, wf: str) -> WorkflowView:
        return workflow_view(replay(await self.history(wf)))


@pytest.fixture
async def rig(clean_nats: NATS) -> AsyncIterator[Rig]:
    rig = Rig(clean_nats)
    engine = await running_engine(clean_nats, rig.dispatcher)
    rig.runner.start()
    try:
        yield rig
    finally:
        await rig.runner.stop()
        await engine.stop()


@contextlib.asynccontextmanager
async def projecting(nc: NATS, settings: ProjectorSettings = FAST) -> AsyncIterator[Projector]:
    projector = Projector(nc, settings=settings)
    await projector.start()
    try:
        yield projector
    finally:
        await projector.stop()


async def views_equal_folds(rig: Rig, views: Views, wfs: list[str]) -> None:
    async def probe() -> bool:
        for wf in wfs:
            assert await views.get(wf) == await rig.expected(wf), wf
        return True

    await assert_eventually(probe, timeout=20, message="views never matched the folds")


async def test_views_match_the_fold_of_each_history_after_a_mixed_run(rig: Rig) -> None:
    views = Views(rig.nc)
    async with projecting(rig.nc):
        wfs = await rig.mixed()
        await views_equal_folds(rig, views, wfs)
        await views.wait_caught_up()
    assert await views.lag() == 0
    by_id = {wf: await views.get(wf) for wf in wfs}
    assert {wf: view.status for wf, view in by_id.items() if view} == {
        "ok": "succeeded",
        "ok2": "succeeded",
        "flaky": "succeeded",
        "bad": "failed",
        "stop": "cancelled",
    }
    flaky = by_id["flaky"]
    assert flaky is not None
    assert flaky.jobs["flaky"].attempts == 2
    assert flaky.jobs["flaky"].worker_id == "runner"
    bad = by_id["bad"]
    assert bad is not None
    assert bad.jobs["boom"].error == "boom"
    assert bad.jobs["after"].status == "skipped"
    ok = by_id["ok"]
    assert ok is not None
    assert ok.jobs["a"].outputs == {"greeting": "hello"}
    assert ok.jobs["d"].started_at is not None
    assert ok.jobs["d"].ended_at is not None
    assert await views.get("never-started") is None
    assert await views.get("not a valid id") is None


async def test_listing_filters_orders_and_limits_a_mixed_run(rig: Rig) -> None:
    views = Views(rig.nc)
    async with projecting(rig.nc):
        wfs = await rig.mixed()
        await views_equal_folds(rig, views, wfs)
    expected = sorted(
        [await rig.expected(wf) for wf in wfs],
        key=lambda v: (v.started_at, v.workflow_id),
        reverse=True,
    )
    rows = await views.list()
    assert [row.workflow_id for row in rows] == [v.workflow_id for v in expected]
    assert [row.workflow_id for row in await views.list(limit=2)] == [
        v.workflow_id for v in expected[:2]
    ]
    assert [row.workflow_id for row in await views.list(status="failed")] == ["bad"]
    assert [row.workflow_id for row in await views.list(status="cancelled")] == ["stop"]
    assert {row.workflow_id for row in await views.list(status="succeeded")} == {
        "ok",
        "ok2",
        "flaky",
    }
    assert {row.workflow_id for row in await views.list(name="diamond")} == {"ok", "ok2"}
    assert await views.list(status="running") == []
    assert await views.list(name="nonesuch") == []
    ok = next(row for row in rows if row.workflow_id == "ok")
    assert ok.job_counts["succeeded"] == 4
    assert ok.name == "diamond"
    with pytest.raises(ValueError, match="unknown status"):
        await views.list(status="sleeping")


async def test_a_running_workflow_is_listed_as_running_then_as_ended(rig: Rig) -> None:
    views = Views(rig.nc)
    async with projecting(rig.nc):
        await start_workflow(rig.nc, "slow", STOPPED)

        async def listed(status: str) -> bool:
            return [row.workflow_id for row in await views.list(status=status)] == ["slow"]

        await assert_eventually(lambda: listed("running"))
        await cancel_workflow(rig.nc, "slow")

        async def requested() -> bool:
            return "job.long.JobCancelRequested" in types(await rig.store.history("slow"))

        await assert_eventually(requested)
        _, name, epoch = next(h for h in rig.runner.hanging if h[0] == "slow")
        await rig.runner.confirm_cancelled("slow", name, epoch)
        await assert_eventually(lambda: listed("cancelled"))
        assert await views.list(status="running") == []


async def hanging(rig: Rig, wf: str) -> tuple[str, str, int]:
    await assert_eventually(lambda: any(h[0] == wf for h in rig.runner.hanging))
    return next(h for h in rig.runner.hanging if h[0] == wf)


async def test_a_running_workflow_is_written_once_for_its_held_events_and_its_end_at_once(
    rig: Rig,
) -> None:
    """With a settle far longer than the test, only the end can cause a write: one write
    carrying the whole history, not one per batch; and a small view is one value (its summary
    key holds it), not a view and a summary."""
    views = Views(rig.nc)
    writes: list[bytes] = []

    async def on_write(msg: object) -> None:
        writes.append(getattr(msg, "data", b""))

    sub = await rig.nc.subscribe(f"{KV_PREFIX}*.*.slow", cb=on_write)  # view and summary keys
    settings = ProjectorSettings(poll_interval=0.1, settle=60.0)
    try:
        async with projecting(rig.nc, settings):
            await start_workflow(rig.nc, "slow", STOPPED)
            _, name, epoch = await hanging(rig, "slow")
            await cancel_workflow(rig.nc, "slow")

            async def requested() -> bool:
                return "job.long.JobCancelRequested" in types(await rig.store.history("slow"))

            await assert_eventually(requested)
            assert await views.get("slow") is None  # every event so far is held
            await rig.runner.confirm_cancelled("slow", name, epoch)
            await assert_eventually(
                lambda: _status(views, "slow", "cancelled"),
                timeout=15,  # far below the settle: the end is written at once
                message="the ended workflow was held",
            )
            assert await views.get("slow") == await rig.expected("slow")
            await rig.nc.flush()
            assert len(writes) == 1
    finally:
        await sub.unsubscribe()


async def test_a_graceful_stop_writes_what_is_held(rig: Rig) -> None:
    views = Views(rig.nc)
    settings = ProjectorSettings(poll_interval=0.1, settle=60.0)
    projector = Projector(rig.nc, settings=settings)
    await projector.start()
    try:
        await start_workflow(rig.nc, "slow", STOPPED)
        await hanging(rig, "slow")
        events = len(await rig.history("slow"))
        await assert_eventually(
            lambda: projector.events_seen == events, message="the projector never saw the events"
        )
        assert await views.get("slow") is None
    finally:
        await projector.stop()
    view = await views.get("slow")
    assert view is not None
    assert view == await rig.expected("slow")
    assert view.status == "running"
    assert view.jobs["long"].status == "running"


async def _status(views: Views, wf: str, status: str) -> bool:
    view = await views.get(wf)
    return view is not None and view.status == status


async def test_a_projector_killed_mid_stream_is_replaced_and_converges(
    rig: Rig, nats_url: str
) -> None:
    views = Views(rig.nc)
    settings = ProjectorSettings(poll_interval=0.1, batch=4, generation_check=0.1)
    doomed = await connect(NatsSettings(url=nats_url, name="doomed-projector"))
    first = Projector(doomed, settings=settings)
    await first.start()
    wfs = await rig.mixed()
    # Killed, not stopped: its connection goes away with whatever it had pulled unacked.
    await assert_eventually(lambda: first.events_seen > 0)
    await doomed.close()
    with contextlib.suppress(Exception):
        await first.stop()
    async with projecting(rig.nc, settings):
        await views_equal_folds(rig, views, wfs)
        await views.wait_caught_up()


async def test_replayed_and_stale_events_never_move_a_view_backwards(rig: Rig) -> None:
    views = Views(rig.nc)
    js = rig.nc.jetstream()
    writes: list[tuple[str, int]] = []

    async def record(msg) -> None:
        key = msg.subject.removeprefix(f"$KV.{subjects.KV_WORKFLOWS}.")
        if key.startswith(("g1.v.", "g1.s.")):
            writes.append((key, int(msg.headers["Jw-Seq"])))

    sub = await js.subscribe(
        f"$KV.{subjects.KV_WORKFLOWS}.>", ordered_consumer=True, cb=record, deliver_policy=None
    )
    try:
        async with projecting(rig.nc):
            wfs = await rig.mixed()
            await views_equal_folds(rig, views, wfs)
            await views.wait_caught_up()
        before = {wf: await views.get(wf) for wf in wfs}
        count = len(writes)
        # Every event delivered again, to a projector with nothing cached: no position stored.
        await js.purge_stream(
            f"KV_{subjects.KV_PROJECTOR}", subject=f"$KV.{subjects.KV_PROJECTOR}.g1.pos.>"
        )
        async with projecting(rig.nc) as again:
            await assert_eventually(lambda: again.events_seen >= count)
            await views.wait_caught_up()
        assert {wf: await views.get(wf) for wf in wfs} == before
        # A writer holding an older state loses to the stored view.
        store = ViewStore(rig.nc, generation=1)
        old = before["ok"]
        assert old is not None
        stale = old.model_copy(update={"status": "running", "ended_at": None})
        current = await store.write(stale, 3, Written())
        assert current.seq > 3
        assert await views.get("ok") == old
    finally:
        await sub.unsubscribe()
    for key in {key for key, _ in writes}:
        seqs = [seq for k, seq in writes if k == key]
        assert seqs == sorted(seqs), key
        assert len(seqs) == len(set(seqs)), f"{key} was written twice for one sequence"


@pytest.mark.parametrize("processes", [1, 3], ids=["alone", "with-two-helpers"])
async def test_rebuild_yields_the_live_views_and_the_projector_moves_to_them(
    rig: Rig, processes: int
) -> None:
    views = Views(rig.nc)
    async with projecting(rig.nc) as live:
        wfs = await rig.mixed()
        await views_equal_folds(rig, views, wfs)
        await views.wait_caught_up()
        snapshot = {wf: await views.get(wf) for wf in wfs}
        listing = await views.list()
        failed = await views.list(status="failed")

        with capture_logs() as logs:
            stats = await rebuild(rig.nc, settings=FAST, processes=processes)

        assert stats.processes == processes
        assert not [log for log in logs if log["log_level"] == "warning"]  # the helpers did it
        assert stats.generation == 2
        assert await views.generation() == 2
        assert stats.workflows == len(wfs)
        assert stats.events >= sum([len(await rig.store.history(wf)) for wf in wfs])
        assert {wf: await views.get(wf) for wf in wfs} == snapshot
        assert await views.list() == listing
        assert await views.list(status="failed") == failed
        # The live projector continues in the new generation.
        await assert_eventually(lambda: live.generation == 2)
        await rig.run("after-rebuild", OK)
        await views_equal_folds(rig, views, ["after-rebuild"])
        await views.wait_caught_up()
    kv = await rig.nc.jetstream().stream_info(f"KV_{subjects.KV_WORKFLOWS}", subjects_filter=">")
    assert kv.state.subjects
    assert all(subject.split(".")[2] == "g2" for subject in kv.state.subjects)
    index = await rig.nc.jetstream().stream_info(subjects.INDEX_STREAM, subjects_filter=">")
    assert all(subject.split(".")[1] == "g2" for subject in index.state.subjects or {})


async def test_a_rebuild_while_workflows_run_misses_nothing(rig: Rig) -> None:
    views = Views(rig.nc)
    async with projecting(rig.nc) as live:
        before = await rig.mixed()
        running = asyncio.gather(*(rig.run(f"during{i}", OK) for i in range(4)))
        stats = await rebuild(rig.nc, settings=FAST)
        during = await running
        await assert_eventually(lambda: live.generation == stats.generation)
        await views_equal_folds(rig, views, [*before, *during])
        await views.wait_caught_up()
        listed = {row.workflow_id for row in await views.list(limit=100)}
    assert listed == {*before, *during}


async def test_two_projectors_sharing_the_work_agree_with_the_folds(rig: Rig) -> None:
    views = Views(rig.nc)
    settings = ProjectorSettings(poll_interval=0.1, batch=3, generation_check=0.1)
    async with projecting(rig.nc, settings), projecting(rig.nc, settings):
        wfs = await rig.mixed()
        await views_equal_folds(rig, views, wfs)
        await views.wait_caught_up()
        rows = await views.list()
    assert {row.workflow_id for row in rows} == set(wfs)


class IndexSnapshot:
    """A generation's index and which entry each summary names, read once, so that the scan
    can be replayed in memory with any window size (smaller windows: more places to stop)."""

    def __init__(self, messages: list[Stored], named: dict[str, int]) -> None:
        self._messages = messages
        self._named = named
        self._matching: dict[str, tuple[list[int], list[Stored]]] = {}
        marks = [m for m in messages if m.subject.endswith(".bounds")]
        self.last_entry = max(m.seq for m in messages if not m.subject.endswith(".bounds"))
        self.marked = max((mark.through for mark in map(decode_mark, marks) if mark), default=0)

    @classmethod
    async def load(cls, nc: NATS, *, generation: int) -> IndexSnapshot:
        messages = await Direct(nc, subjects.INDEX_STREAM).all(f"wfidx.g{generation}.>")
        summaries = await Direct(nc, KV_STREAM).all(f"{KV_PREFIX}g{generation}.s.>")
        named = {
            stored.subject.rsplit(".", 1)[-1]: int(stored.headers.get("Jw-Index-Seq", 0))
            for stored in summaries
        }
        return cls(messages, named)

    async def last(self, subject: str) -> Stored | None:
        _, found = self._match(subject)
        return found[-1] if found else None

    async def next(
        self, filter_subject: str, *, from_seq: int, limit: int
    ) -> tuple[list[Stored], int]:
        seqs, found = self._match(filter_subject)
        at = bisect.bisect_left(seqs, from_seq)
        return found[at : at + limit], max(0, len(found) - at - limit)

    async def listing(
        self, status: str | None, name: str | None, limit: int, window: int
    ) -> list[str]:
        async def accept(entries: list[IndexEntry]) -> list[tuple[IndexEntry, str]]:
            return [(e, e.workflow_id) for e in entries if self._named.get(e.workflow_id) == e.seq]

        return await newest(
            self,
            1,
            status=status,
            name=name,
            limit=limit,
            accept=accept,
            first_window=window,
        )

    def _match(self, filter_subject: str) -> tuple[list[int], list[Stored]]:
        if filter_subject not in self._matching:
            want = filter_subject.split(".")
            found = [m for m in self._messages if _matches(want, m.subject.split("."))]
            self._matching[filter_subject] = ([m.seq for m in found], found)
        return self._matching[filter_subject]


def _matches(want: list[str], have: list[str]) -> bool:
    if want[-1] == ">":
        return len(have) >= len(want) and _matches(want[:-1], have[: len(want) - 1])
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


async def append_timeline(store: EventStore, count: int, rng: random.Random) -> list[str]:
    """``count`` workflows started one a second by engines whose clocks differ by up to 20 s,
    each ending (70% succeeded, 15% failed, 15% cancelled) up to 60 starts later or never (10%),
    appended in that order."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    definitions = [
        parse_workflow({"name": name, "jobs": {"only": {"run": "true"}}})
        for name in ("build", "deploy", "etl")
    ]
    endings: dict[int, list[tuple[str, int]]] = {}
    wfs = []
    for step in range(count + 61):
        if step < count:
            wf = f"wf{step:04d}"
            started = base + timedelta(seconds=step + rng.randrange(-20, 21))
            start = WorkflowStarted(
                workflow_id=wf, definition=rng.choice(definitions), started_at=started
            )
            first = await store.append(
                ActorRef.workflow(wf), [start], expected_seq=0, command_id=f"{wf}-start"
            )
            wfs.append(wf)
            if rng.random() < 0.9:
                endings.setdefault(step + rng.randrange(61), []).append((wf, first))
        for wf, first in endings.pop(step, []):
            now, roll = base + timedelta(seconds=step), rng.random()
            end: WorkflowEvent = (
                WorkflowSucceeded(workflow_id=wf, ended_at=now)
                if roll < 0.7
                else WorkflowFailed(workflow_id=wf, reason="boom", ended_at=now)
                if roll < 0.85
                else WorkflowCancelled(workflow_id=wf, reason="stop", ended_at=now)
            )
            await store.append(
                ActorRef.workflow(wf), [end], expected_seq=first, command_id=f"{wf}-end"
            )
    return wfs


async def test_two_projectors_sharing_the_work_list_exactly_through_the_index(
    clean_nats: NATS,
) -> None:
    """Two projectors share the partitions and project a flood of workflows together, recent
    lists kept short: listings they cannot serve (``running``, deeper than them, or with them
    turned off) scan the index both projectors wrote. Every one must equal the folds, through
    the reader and through the same scan over the stored index with smaller windows."""
    store = EventStore(clean_nats)
    settings = ProjectorSettings(poll_interval=0.1, recent_size=8, lease_ttl=2.0, renew_every=0.25)
    async with projecting(clean_nats, settings) as one, projecting(clean_nats, settings) as two:
        await assert_eventually(
            lambda: one.partitions and two.partitions, message="the partitions were never shared"
        )
        wfs = await append_timeline(store, 2000, random.Random(11))
        await Views(clean_nats).wait_caught_up(timeout=60)
    assert one.events_seen and two.events_seen, "both projectors must have done part of the work"
    histories = await asyncio.gather(
        *(store.read_tolerant(subjects.workflow_events(wf)) for wf in wfs)
    )
    folded = sorted(
        (summary(workflow_view(replay(history.events))) for history in histories),
        key=lambda row: (row.started_at, row.workflow_id),
        reverse=True,
    )
    snapshot = await IndexSnapshot.load(clean_nats, generation=1)
    # Each projector marks the index after every batch: stopped, they left no entry unmarked.
    assert snapshot.marked == snapshot.last_entry
    wrong = []
    for status in (None, "running", "succeeded", "failed", "cancelled"):
        for name in (None, "build", "etl"):
            rows = [
                row
                for row in folded
                if (status is None or row.status == status) and name in (None, row.name)
            ]
            ids = [row.workflow_id for row in rows]
            for limit in (1, 3, 10, 30, 60, 100, 150, 200, 300, 500, 1300):
                for views in (Views(clean_nats), Views(clean_nats, recent_lists=False)):
                    if await views.list(status=status, name=name, limit=limit) != rows[:limit]:
                        wrong.append(("reader", status, name, limit))
            for window in (4, 32, 256):
                for limit in range(1, len(ids) + 2, max(1, len(ids) // 40)):
                    if await snapshot.listing(status, name, limit, window) != ids[:limit]:
                        wrong.append((f"scan, window {window}", status, name, limit))
    by_kind = Counter(kind for kind, *_ in wrong)
    examples = sorted(wrong, key=lambda listing: listing[0] != "reader")[:6]
    assert not wrong, f"listings that differ from the folds: {dict(by_kind)}, e.g. {examples}"


async def test_rebuild_without_a_live_projector_then_a_projector_continues(rig: Rig) -> None:
    views = Views(rig.nc)
    wfs = await rig.mixed()
    events = sum([len(await rig.store.history(wf)) for wf in wfs])
    assert await views.lag() == events
    stats = await rebuild(rig.nc, settings=FAST, processes=2)
    assert (stats.generation, stats.events, stats.workflows) == (2, events, len(wfs))
    assert await views.lag() == 0
    await views_equal_folds(rig, views, wfs)
    await rig.run("later", FLAKY)
    assert await views.get("later") is None  # nothing projects until a projector runs
    async with projecting(rig.nc) as projector:
        assert projector.generation == 2
        await views_equal_folds(rig, views, [*wfs, "later"])


async def test_a_rebuild_helper_that_fails_has_its_partitions_projected_by_the_rebuild(
    rig: Rig,
) -> None:
    views = Views(rig.nc)
    wfs = await rig.mixed()
    assert len({subjects.partition_of(wf) for wf in wfs}) > 1  # (both shares have work)
    events = sum([len(await rig.store.history(wf)) for wf in wfs])
    # The helper is told a server nothing listens on: it cannot connect and exits.
    with capture_logs() as logs:
        stats = await rebuild(rig.nc, settings=FAST, processes=2, url="nats://127.0.0.1:1")
    [failed] = [log for log in logs if log["log_level"] == "warning"]
    assert "cannot reach the NATS server at nats://127.0.0.1:1" in failed["error"]
    assert (stats.generation, stats.events, stats.workflows) == (2, events, len(wfs))
    assert await views.lag() == 0
    await views_equal_folds(rig, views, wfs)


async def test_garbage_on_the_event_stream_is_skipped_and_the_projector_keeps_going(
    rig: Rig,
) -> None:
    views = Views(rig.nc)
    js = rig.nc.jetstream()
    async with projecting(rig.nc) as projector:
        await js.publish(subjects.job_event("junk", "a", "JobSucceeded"), b"{broken")
        await js.publish(subjects.workflow_event("nobody", "WorkflowStarted"), b'{"type": "No"}')
        await js.publish(subjects.workflow_event("junk", "Whatever"), orjson.dumps([1, 2, 3]))
        await rig.run("junk", OK)
        await views_equal_folds(rig, views, ["junk"])
        await views.wait_caught_up()
        assert projector.events_seen == 3 + len(await rig.history("junk"))
    assert await views.get("nobody") is None
    assert [row.workflow_id for row in await views.list()] == ["junk"]


async def test_a_view_bigger_than_one_message_is_stored_in_chunks(rig: Rig) -> None:
    views = Views(rig.nc)
    settings = ProjectorSettings(poll_interval=0.1, max_value=600)
    wide = {
        "name": "wide",
        "jobs": {f"job{i:02d}": {"run": f"echo {i}"} for i in range(24)},
    }
    async with projecting(rig.nc, settings):
        await rig.run("wide", wide)
        await views_equal_folds(rig, views, ["wide"])
        await views.wait_caught_up()
    view = await views.get("wide")
    assert view is not None
    assert len(view.model_dump_json()) > 600 * 3
    info = await rig.nc.jetstream().stream_info(
        f"KV_{subjects.KV_WORKFLOWS}", subjects_filter=f"$KV.{subjects.KV_WORKFLOWS}.g1.c.>"
    )
    chunk_sets = {subject.split(".")[5] for subject in info.state.subjects or {}}
    assert len(chunk_sets) == 1  # older versions' chunks were removed


async def test_workers_are_listed_with_staleness(clean_nats: NATS) -> None:
    now = datetime.now(UTC)
    kv = await clean_nats.jetstream().key_value(subjects.KV_WORKERS)

    def entry(worker_id: str, seen: datetime) -> bytes:
        return orjson.dumps(
            {
                "worker_id": worker_id,
                "labels": ["linux"],
                "handlers": ["resize"],
                "concurrency": 4,
                "started_at": (now - timedelta(hours=1)).isoformat(),
                "last_seen": seen.isoformat(),
                "running": [{"workflow_id": "wf", "job": "a", "attempt": 1, "epoch": 2}],
                "host": "box",
                "pid": 42,
            }
        )

    await kv.put("w-fresh", entry("w-fresh", now))
    await kv.put("w-old", entry("w-old", now - timedelta(minutes=5)))
    await kv.put("w-gone", entry("w-gone", now))
    await kv.delete("w-gone")
    await kv.put("w-garbage", b"not json")
    workers = await Views(clean_nats).workers()
    assert [(w.worker_id, w.stale) for w in workers] == [("w-fresh", False), ("w-old", True)]
    assert workers[0].labels == ("linux",)
    assert workers[0].running[0].epoch == 2
    assert workers[0].concurrency == 4


async def test_listing_many_views_is_exact_for_every_filter(clean_nats: NATS) -> None:
    """Views written in an order unrelated to their start times, the index marked now and then
    (as after a projector's batch); recent lists kept short so that deep listings fall back to
    the index scan, which is also checked on its own."""
    rng = random.Random(7)
    store = ViewStore(clean_nats, generation=1)
    recent = RecentWriter(
        Direct(clean_nats, KV_STREAM),
        Publisher(clean_nats),
        prefix=KV_PREFIX,
        generation=1,
        size=20,
    )
    base = datetime(2025, 1, 1, tzinfo=UTC)
    truth: dict[str, WorkflowView] = {}
    order = list(range(300))
    rng.shuffle(order)

    async def write(view: WorkflowView, seq: int, prev: Written) -> Written:
        written = await store.write(view, seq, prev)
        await recent.note(
            view.workflow_id, name=view.name, status=view.status, started_us=micros(view.started_at)
        )
        await recent.flush()
        return written

    for seq, i in enumerate(order, start=1):
        started = base + timedelta(seconds=rng.randrange(100_000))
        view = WorkflowView(
            workflow_id=f"wf{i:03d}",
            name=rng.choice(["build", "deploy", "etl"]),
            status="running",
            started_at=started,
            jobs={"only": JobView(status="running", attempts=1)},
        )
        written = await write(view, seq * 10, Written())
        if rng.random() < 0.8:
            status = rng.choice(["succeeded", "failed", "cancelled"])
            view = view.model_copy(update={"status": status, "ended_at": started})
            await write(view, seq * 10 + 1, written)
        truth[view.workflow_id] = view
        if seq % 16 == 0:
            await store.mark_index()
    for views in (Views(clean_nats), Views(clean_nats, recent_lists=False)):
        for status in [None, "running", "succeeded", "failed", "cancelled"]:
            for name in [None, "build", "etl"]:
                matching = [
                    v
                    for v in truth.values()
                    if (status is None or v.status == status) and (name is None or v.name == name)
                ]
                matching.sort(key=lambda v: (v.started_at, v.workflow_id), reverse=True)
                for limit in (1, 7, 20, 50, 400):
                    rows = await views.list(status=status, name=name, limit=limit)
                    assert [r.workflow_id for r in rows] == [
                        v.workflow_id for v in matching[:limit]
                    ], (status, name, limit)


async def test_a_view_moves_between_its_summary_key_and_its_own_key_as_it_grows(
    clean_nats: NATS,
) -> None:
    """A small view is one value in the summary key; past ``INLINE_VIEW`` it gets its own key
    and the summary goes beside it; readers always take the newest, whichever key holds it."""
    store = ViewStore(clean_nats, generation=1)
    kv = Direct(clean_nats, KV_STREAM)
    started = datetime(2026, 1, 1, tzinfo=UTC)

    def view(jobs: int, status: str = "running") -> WorkflowView:
        return WorkflowView(
            workflow_id="grows",
            name="n",
            status=status,
            started_at=started,
            jobs={f"job{i:04d}": JobView(status="queued", attempts=0) for i in range(jobs)},
        )

    async def keys() -> set[str]:
        found = await kv.last_of_each([f"{KV_PREFIX}g1.v.grows", f"{KV_PREFIX}g1.s.grows"])
        return {s.subject.split(".")[3] for s in found.values() if not s.is_tombstone}

    small, big, small_again = view(2), view(400), view(3, "succeeded")
    assert len(big.model_dump_json()) > INLINE_VIEW > len(small.model_dump_json())
    written = await store.write(small, 10, Written())
    assert await keys() == {"s"}  # one value
    assert (await store.view("grows"), (await store.written("grows")).seq) == (small, 10)
    written = after_big = await store.write(big, 20, written)
    assert await keys() == {"v", "s"}
    assert await store.view("grows") == big
    assert (await store.summaries(["grows"]))["grows"].summary == summary(big)
    assert await store.write(small, 15, Written()) == await store.written("grows")  # stale: lost
    assert await store.view("grows") == big
    written = await store.write(small_again, 30, written)
    assert (await store.view("grows"), written.seq) == (small_again, 30)  # the older big one stays
    assert (await store.summaries(["grows"]))["grows"].summary == summary(small_again)
    assert (await store.written("grows")).status == "succeeded"
    # A stale big write: its view key's compare-and-set goes through (the small view never
    # touched it), yet it loses to the newer small view, and its index entry is taken back.
    assert (await store.write(view(401, "failed"), 25, after_big)).seq == 30
    assert await store.view("grows") == small_again
    index = await clean_nats.jetstream().stream_info(subjects.INDEX_STREAM)
    assert index.state.messages == 1  # the succeeded entry only
    await store.remove("grows", written)
    assert await store.view("grows") is None and await store.summaries(["grows"]) == {}


async def test_deleting_an_index_entry_that_is_gone_already_is_done(clean_nats: NATS) -> None:
    # A killed projector may delete an entry its successor deletes again: one inside the stream
    # (10043) or the oldest (below the stream's first sequence: 10057). Both are done, not
    # failures (the successor retried such a delete for ever, its workflow never acked).
    writer = IndexWriter(
        Direct(clean_nats, subjects.INDEX_STREAM), Publisher(clean_nats), generation=1
    )
    started = datetime(2026, 1, 1, tzinfo=UTC)
    seqs = [
        await writer.add(
            WorkflowView(workflow_id=f"wf{i}", name="n", status="running", started_at=started)
        )
        for i in range(3)
    ]
    for seq in (seqs[1], seqs[0]):  # one inside the stream, then the oldest
        await writer.remove(seq)
        await writer.remove(seq)
    info = await clean_nats.jetstream().stream_info(subjects.INDEX_STREAM)
    assert info.state.messages == 1
