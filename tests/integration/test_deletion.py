"""Deleting workflows end to end on a real server: ``Client.delete`` and the retention sweep
remove an ended workflow's events (its tombstone stays), logs, view and listing entry; an open
workflow is refused and left whole; other workflows are untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from events import subjects
from events.catalog import WorkflowDeleted
from events.errors import CommandRefused, WorkflowNotFound
from projections import Projector, Views
from sdk.deletion import Retention
from tests.engine_harness import start_workflow, succeed, types
from tests.eventually import assert_eventually
from tests.integration.test_control import Rig, a_hangs, rig  # noqa: F401  (the fixture)
from tests.integration.test_projections import FAST

ONE = {"name": "one", "jobs": {"a": {"run": "echo a"}}}


@pytest.fixture
async def views(rig: Rig) -> AsyncIterator[Views]:  # noqa: F811
    projector = Projector(rig.nc, settings=FAST)
    await projector.start()
    views = Views(rig.nc)
    try:
        yield views
    finally:
        await views.close()
        await projector.stop()


async def _log(on: Rig, wf: str) -> None:
    await on.nc.jetstream().publish(subjects.log(wf, "a"), b"a line")


async def _logs(on: Rig, wf: str) -> int:
    info = await on.nc.jetstream().stream_info(subjects.LOGS_STREAM, subjects_filter=f"log.{wf}.>")
    return sum((info.state.subjects or {}).values())


async def _projected(views: Views, *wfs: str) -> None:
    async def probe() -> bool:
        for wf in wfs:
            view = await views.get(wf)
            assert view is not None and view.ended_at is not None, (wf, view)
        listed = {row.workflow_id for row in await views.list(limit=100, every_namespace=True)}
        assert set(wfs) <= listed, listed
        return True

    await assert_eventually(probe, timeout=15)


async def test_deleting_an_ended_workflow_removes_its_events_logs_and_view(
    rig: Rig,  # noqa: F811
    views: Views,
) -> None:
    await rig.start(succeed)
    for wf in ("wf-gone", "wf-kept"):
        await start_workflow(rig.nc, wf, ONE)
        await rig.until(wf, "wf.WorkflowSucceeded")
        await _log(rig, wf)
    await _projected(views, "wf-gone", "wf-kept")
    kept = await rig.history("wf-kept")

    deleted = await rig.client.delete("wf-gone", reason="test run", by="ops")

    history = await rig.history("wf-gone")
    assert types(history) == ["wf.WorkflowDeleted"]
    tombstone = history[0].event
    assert isinstance(tombstone, WorkflowDeleted)
    assert (tombstone.by, tombstone.reason, tombstone.status, tombstone.name) == (
        "ops",
        "test run",
        "succeeded",
        "one",
    )
    assert deleted.tombstone_seq == history[0].seq
    with pytest.raises(WorkflowNotFound):
        await rig.client.status("wf-gone")
    assert not await rig.client.exists("wf-gone")
    assert await _logs(rig, "wf-gone") == 0

    async def view_gone() -> bool:
        assert await views.get("wf-gone") is None
        listed = [row.workflow_id for row in await views.list(limit=100)]
        assert listed == ["wf-kept"]
        return True

    await assert_eventually(view_gone, timeout=15)
    # The other workflow is whole.
    assert [r.seq for r in await rig.history("wf-kept")] == [r.seq for r in kept]
    assert (await rig.client.status("wf-kept")).status == "succeeded"
    assert await _logs(rig, "wf-kept") == 1
    # A second deletion finds the tombstone and changes nothing more.
    again = await rig.client.delete("wf-gone")
    assert (again.tombstone_seq, again.by) == (deleted.tombstone_seq, "ops")
    assert types(await rig.history("wf-gone")) == ["wf.WorkflowDeleted"]
    with pytest.raises(WorkflowNotFound):
        await rig.client.delete("wf-never")


async def test_an_open_workflow_is_refused_and_left_whole(rig: Rig) -> None:  # noqa: F811
    await rig.start(a_hangs)
    await start_workflow(rig.nc, "wf-open", ONE)
    await assert_eventually(lambda: rig.runner is not None and rig.runner.hanging)
    before = await rig.history("wf-open")
    with pytest.raises(CommandRefused, match="it is running; only an ended workflow"):
        await rig.client.delete("wf-open")
    assert [r.seq for r in await rig.history("wf-open")] == [r.seq for r in before]
    assert (await rig.client.status("wf-open")).status == "running"


async def test_retention_deletes_only_the_workflows_that_ended_before_it(
    rig: Rig,  # noqa: F811
    views: Views,
) -> None:
    await rig.start(a_hangs)
    done = {"name": "done", "jobs": {"b": {"run": "echo b"}}}
    await start_workflow(rig.nc, "wf-old", done)
    await rig.until("wf-old", "wf.WorkflowSucceeded")
    await start_workflow(rig.nc, "wf-old-ns", done, namespace="team-a")  # every namespace's
    await rig.until("wf-old-ns", "wf.WorkflowSucceeded")
    await start_workflow(rig.nc, "wf-new", done)
    await rig.until("wf-new", "wf.WorkflowSucceeded")
    await start_workflow(rig.nc, "wf-open", ONE)  # a hangs: it stays running
    await _projected(views, "wf-old", "wf-new", "wf-old-ns")
    await rig.until("wf-open", "job.a.JobQueued")
    old = (await rig.client.status("wf-old")).ended_at
    new = (await rig.client.status("wf-new")).ended_at
    assert old is not None and new is not None and old < new
    keep = timedelta(days=30)
    # The clock the sweep reads: 30 days after a moment just before the new one's end.
    now: datetime = new - timedelta(milliseconds=1) + keep
    open_before = await rig.history("wf-open")
    retention = Retention(rig.nc, retention=keep, clock=lambda: now)
    try:
        assert sorted(await retention.sweep()) == ["wf-old", "wf-old-ns"]
    finally:
        await retention.stop()
    assert types(await rig.history("wf-old")) == ["wf.WorkflowDeleted"]
    assert types(await rig.history("wf-old-ns")) == ["wf.WorkflowDeleted"]
    assert (await rig.client.status("wf-new")).status == "succeeded"
    assert [r.seq for r in await rig.history("wf-open")] == [r.seq for r in open_before]

    async def listed() -> bool:
        rows = {row.workflow_id for row in await views.list(limit=100)}
        assert rows == {"wf-new", "wf-open"}
        return True

    await assert_eventually(listed, timeout=15)
