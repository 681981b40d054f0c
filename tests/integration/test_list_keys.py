"""``list`` filters answered from the secondary index entries (``projections.keys``), end to end:
a real engine and projector on a real server, sub-workflows, failures, a deletion and a rebuild.
Every answer is also checked against the plain index scan (no secondary entries, no recent
lists)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from events import subjects
from projections import Views, keys
from projections._nats import Direct
from projections.generations import Generations
from projections.rebuild import rebuild
from projections.search import ListFilter
from projections.views import WorkflowSummary
from tests.engine_harness import Outcome, start_workflow
from tests.eventually import assert_eventually
from tests.gateway_harness import start
from tests.integration.test_control import Rig, rig  # noqa: F401  (the fixture)
from tests.integration.test_deletion import views  # noqa: F401  (the fixture)
from tests.integration.test_gateway_api import http  # noqa: F401  (the fixture)
from tests.integration.test_projections import FAST

FAILING = {"wf-k1", "wf-k2"}
CHILD = {"name": "child", "jobs": {"work": {"run": "echo w"}}}


def _definition(*, gpu: bool) -> dict[str, Any]:
    job: dict[str, Any] = {"run": "echo a"}
    if gpu:
        job["labels"] = ["gpu"]
    return {"name": "keyed", "inputs": {"env": {}, "n": {}}, "jobs": {"a": job}}


PARENT = {
    "name": "parent",
    "jobs": {"sub": {"workflow": "./child.yaml"}},
    "workflows": {"./child.yaml": CHILD},
}


def _behaviour(state: Any) -> Outcome:
    if state.workflow_id in FAILING:
        return Outcome(error="boom", retryable=False)
    return Outcome()


@pytest.fixture
async def scan(rig: Rig) -> AsyncIterator[list[Views]]:  # noqa: F811
    """The plain index scan, and the secondary entries without the recent lists (start
    windows then read by hours: ``projections.keys.by_time``)."""
    readers = [
        Views(rig.nc, recent_lists=False, secondary=False),
        Views(rig.nc, recent_lists=False),
    ]
    try:
        yield readers
    finally:
        for views in readers:
            await views.close()


async def _run_all(rig: Rig, views: Views) -> str:  # noqa: F811
    """Start the workflows one after the other (so their starts are ordered); the child's id."""
    await rig.start(_behaviour)
    for n, (env, gpu) in enumerate(
        [("prod", True), ("dev", False), ("prod", True), ("prod", False)]
    ):
        wf = f"wf-k{n}"
        await start_workflow(rig.nc, wf, _definition(gpu=gpu), inputs={"env": env, "n": n})
        await rig.until(wf, "wf.WorkflowStarted")
    await start_workflow(rig.nc, "wf-kp", PARENT)
    for wf in ("wf-k0", "wf-k3", "wf-kp"):
        await rig.until(wf, "wf.WorkflowSucceeded")
    for wf in FAILING:
        await rig.until(wf, "wf.WorkflowFailed")

    async def projected() -> str:
        rows = await views.list(limit=100)
        ended = [row for row in rows if row.ended_at is not None]
        assert len(ended) == 6, [(row.workflow_id, row.status) for row in rows]
        return next(row.workflow_id for row in rows if row.name == "child")

    return await assert_eventually(projected, timeout=15)


def _ids(rows: list[WorkflowSummary]) -> list[str]:
    return [row.workflow_id for row in rows]


async def _same_as_scan(
    views: Views,  # noqa: F811
    others: list[Views],
    where: ListFilter,
    **options: Any,
) -> list[str]:
    found = await views.list(where=where, **options)
    for other in others:
        assert found == await other.list(where=where, **options), (where, options)
    return _ids(found)


async def _entries(rig: Rig, subject: str) -> int:  # noqa: F811
    """The workflows listed under ``subject`` (entries written together share a message)."""
    direct = Direct(rig.nc, subjects.KEYS_STREAM)
    try:
        return sum(len(keys.decode(stored)) for stored in await direct.all(subject))
    finally:
        await direct.close()


async def test_filters_from_the_secondary_entries(
    rig: Rig,  # noqa: F811
    views: Views,  # noqa: F811
    scan: list[Views],
) -> None:
    child = await _run_all(rig, views)
    pointer = await Generations(rig.nc).current()
    assert pointer.keyed, pointer
    gen = pointer.generation
    # Each workflow's first view wrote its entries: the subjects hold exactly the matches.
    assert await _entries(rig, keys.input_subject(gen, "env", "prod")) == 3
    assert await _entries(rig, keys.label_subject(gen, "gpu")) == 2
    assert await _entries(rig, keys.parent_subject(gen, "wf-kp")) == 1

    prod = ListFilter(inputs={"env": "prod"})
    assert await _same_as_scan(views, scan, prod) == ["wf-k3", "wf-k2", "wf-k0"]
    assert await _same_as_scan(views, scan, prod, limit=1) == ["wf-k3"]
    assert await _same_as_scan(views, scan, prod, limit=2) == ["wf-k3", "wf-k2"]
    assert await _same_as_scan(views, scan, prod, status="failed") == ["wf-k2"]
    assert await _same_as_scan(views, scan, prod, status="succeeded") == ["wf-k3", "wf-k0"]
    assert await _same_as_scan(views, scan, prod, name="child") == []
    # Numbers compare by their JSON text.
    assert await _same_as_scan(views, scan, ListFilter(inputs={"n": "2"})) == ["wf-k2"]
    both = ListFilter(inputs={"env": "prod"}, labels=("gpu",))
    assert await _same_as_scan(views, scan, both) == ["wf-k2", "wf-k0"]
    assert await _same_as_scan(views, scan, both, status="succeeded") == ["wf-k0"]
    gpu = ListFilter(labels=("gpu",))
    assert await _same_as_scan(views, scan, gpu, status="running") == []
    parent = ListFilter(parent="wf-kp")
    assert await _same_as_scan(views, scan, parent) == [child]
    assert await _same_as_scan(views, scan, parent, status="failed") == []
    assert await _same_as_scan(views, scan, ListFilter(inputs={"env": "qa"})) == []

    # Start windows, by the hours and slots the workflows started in.
    rows = {row.workflow_id: row for row in await views.list(limit=100)}
    k1, k2 = rows["wf-k1"].started_at, rows["wf-k2"].started_at
    assert k1 is not None and k2 is not None
    window = ListFilter(since=k1, until=k2)
    assert await _same_as_scan(views, scan, window) == ["wf-k2", "wf-k1"]
    assert await _same_as_scan(views, scan, ListFilter(until=k2)) == ["wf-k2", "wf-k1", "wf-k0"]
    assert await _same_as_scan(views, scan, ListFilter(until=k2), limit=2) == ["wf-k2", "wf-k1"]
    early = ListFilter(until=k2 - timedelta(days=400))
    assert await _same_as_scan(views, scan, early) == []


async def test_deleted_workflows_leave_the_secondary_entries(
    rig: Rig,  # noqa: F811
    views: Views,  # noqa: F811
    scan: list[Views],
) -> None:
    await _run_all(rig, views)
    gen = (await Generations(rig.nc).current()).generation

    await rig.client.delete("wf-k2", reason="test", by="ops")

    async def gone() -> bool:
        assert "wf-k2" not in _ids(await views.list(limit=100))
        assert await _entries(rig, keys.input_subject(gen, "n", "2")) == 0
        return True

    await assert_eventually(gone, timeout=15)
    assert await _entries(rig, keys.label_subject(gen, "gpu")) == 1
    prod = ListFilter(inputs={"env": "prod"})
    assert await _same_as_scan(views, scan, prod) == ["wf-k3", "wf-k0"]
    assert await _same_as_scan(views, scan, ListFilter(labels=("gpu",))) == ["wf-k0"]


async def test_a_rebuild_writes_the_secondary_entries_of_its_generation(
    rig: Rig,  # noqa: F811
    views: Views,  # noqa: F811
    scan: list[Views],
) -> None:
    child = await _run_all(rig, views)
    before = (await Generations(rig.nc).current()).generation

    stats = await rebuild(rig.nc, settings=FAST)

    after = await Generations(rig.nc).current()
    assert after.generation == stats.generation > before and after.keyed
    assert await _entries(rig, keys.input_subject(after.generation, "env", "prod")) == 3
    assert await _entries(rig, keys.generation_filter(before)) == 0  # the old generation's
    prod = ListFilter(inputs={"env": "prod"})
    assert await _same_as_scan(views, scan, prod) == ["wf-k3", "wf-k2", "wf-k0"]
    assert await _same_as_scan(views, scan, ListFilter(parent="wf-kp")) == [child]


async def test_pages_of_a_filtered_listing_over_http(http: httpx.AsyncClient) -> None:  # noqa: F811
    """``next`` links keep every filter, repeated ones too, page after page."""
    definition = {
        "name": "paged",
        "inputs": {"env": {}, "team": {}},
        "jobs": {"a": {"run": "echo", "labels": ["nobody-serves-this"]}},
    }
    started = []
    for n, (env, team) in enumerate([("prod", "a"), ("prod", "b"), ("prod", "a"), ("dev", "a")]):
        wf = await start(
            http, definition, inputs={"env": env, "team": team}, idempotency_key=f"p{n}"
        )
        started.append(wf)

    async def listed() -> bool:
        rows = (await http.get("/api/workflows", params={"name": "paged"})).json()["workflows"]
        assert len(rows) == 4, rows
        return True

    await assert_eventually(listed, timeout=15)
    expected = [started[2], started[0]]  # env=prod and team=a, newest first
    query = [("input", "env=prod"), ("input", "team=a"), ("label", "nobody-serves-this")]
    for extra in ([], [("status", "running")]):
        seen, url = [], "/api/workflows"
        page = await http.get(url, params=[*query, *extra, ("limit", "1")])
        while True:
            assert page.status_code == 200, page.text
            seen += [row["workflow_id"] for row in page.json()["workflows"]]
            following = page.json()["next"]
            if following is None:
                break
            page = await http.get(following)
        assert seen == expected, (extra, seen)
    none = await http.get("/api/workflows", params=[*query, ("status", "failed")])
    assert none.json()["workflows"] == []
