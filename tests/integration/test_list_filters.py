"""``list`` filters on a real server: start time, inputs, labels, parent (views written into the
store the way the projector writes them, with start times the test chooses)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import ParentLink
from projections import Views, keys
from projections._nats import Direct, Publisher
from projections.generations import Generations
from projections.index import micros
from projections.recent import RecentWriter
from projections.search import ListFilter
from projections.store import KV_PREFIX, KV_STREAM, ViewStore, Written
from projections.views import WorkflowView
from sdk.client import Client
from sdk.errors import InvalidArgument

T0 = datetime(2026, 12, 1, tzinfo=UTC)
CHILD_OF_0 = ParentLink(workflow_id="wf-0", job="fan", attempt=1)


def _view(i: int, **fields: object) -> WorkflowView:
    started = T0 + timedelta(hours=i)
    return WorkflowView(
        workflow_id=f"wf-{i}",
        name="etl",
        status="succeeded",
        started_at=started,
        ended_at=started + timedelta(minutes=1),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(clean_nats: NATS) -> AsyncIterator[Client]:
    # A generation made by this code: every view gets its secondary entries (projections.keys).
    generations = Generations(clean_nats)
    assert (await generations.ensure()).keyed
    await generations.close()
    store = ViewStore(clean_nats, generation=1)
    views = [
        _view(0, inputs={"env": "prod", "n": 1}, labels=("linux",)),
        _view(1, inputs={"env": "dev", "n": 2}, labels=("gpu", "linux")),
        _view(2, inputs={"env": "prod", "n": 3}, labels=("gpu",), parent=CHILD_OF_0),
        _view(3, inputs={}, parent=CHILD_OF_0),
    ]
    recent = RecentWriter(
        Direct(clean_nats, KV_STREAM), Publisher(clean_nats), prefix=KV_PREFIX, generation=1
    )
    for seq, view in enumerate(views, start=1):
        await store.write(view, seq, Written())
        started = micros(view.started_at)
        await recent.note(view.workflow_id, name=view.name, status=view.status, started_us=started)
    await recent.flush()
    await store.mark_index()
    await store.close()
    client = Client(clean_nats)
    yield client
    await client.close()


async def _ids(client: Client, **filters: object) -> list[str]:
    return [row.workflow_id for row in await client.list(**filters)]  # type: ignore[arg-type]


async def test_each_filter_and_their_combination(client: Client) -> None:
    assert await _ids(client) == ["wf-3", "wf-2", "wf-1", "wf-0"]
    assert await _ids(client, since=T0 + timedelta(hours=1)) == ["wf-3", "wf-2", "wf-1"]
    assert await _ids(client, until=T0 + timedelta(hours=1)) == ["wf-1", "wf-0"]
    assert await _ids(client, since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=2)) == [
        "wf-2",
        "wf-1",
    ]
    assert await _ids(client, inputs={"env": "prod"}) == ["wf-2", "wf-0"]
    assert await _ids(client, inputs={"env": "prod", "n": 3}) == ["wf-2"]
    assert await _ids(client, labels=["gpu"]) == ["wf-2", "wf-1"]
    assert await _ids(client, labels=["gpu", "linux"]) == ["wf-1"]
    assert await _ids(client, parent="wf-0") == ["wf-3", "wf-2"]
    assert await _ids(client, parent="wf-0", labels=["gpu"], limit=1) == ["wf-2"]
    assert await _ids(client, inputs={"env": "staging"}) == []
    with pytest.raises(InvalidArgument, match="is after until"):
        await client.list(since=T0 + timedelta(hours=2), until=T0)


async def test_since_stops_the_scan_at_the_marks(clean_nats: NATS, client: Client) -> None:
    # Same answer with and without the recent lists; since bounds the scan (marks written).
    views = Views(clean_nats, recent_lists=False, secondary=False)
    try:
        rows = await views.list(where=ListFilter(since=T0 + timedelta(hours=3)))
        assert [row.workflow_id for row in rows] == ["wf-3"]
    finally:
        await views.close()


@pytest.mark.parametrize(
    ("small_bucket", "at_once"), [(256, 512), (0, 512), (256, 0)], ids=["hours", "seconds", "later"]
)
async def test_the_recent_lists_the_keys_and_the_index_give_the_same_rows(
    clean_nats: NATS,
    client: Client,
    small_bucket: int,
    at_once: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # small_bucket 0: every hour is read by its minutes and seconds, as a busy one would be; at_once
    # 0: secondary entries are read only after the recent lists could not answer (many of them).
    monkeypatch.setattr(keys, "_SMALL_BUCKET", small_bucket)
    monkeypatch.setattr(keys, "AT_ONCE", at_once)
    fast, scan = Views(clean_nats), Views(clean_nats, recent_lists=False, secondary=False)
    keyed = Views(clean_nats, recent_lists=False)  # start windows by the time buckets
    hour = timedelta(hours=1)
    filters = [
        ListFilter(since=T0 + hour),
        ListFilter(until=T0 + hour),
        ListFilter(since=T0 + hour, until=T0 + 2 * hour),
        ListFilter(inputs={"env": "prod"}),
        ListFilter(labels=("gpu",)),
        ListFilter(parent="wf-0"),
        ListFilter(parent="wf-0", until=T0 + 2 * hour),
        ListFilter(inputs={"env": "staging"}),
        ListFilter(inputs={"n": "3"}, labels=("gpu",)),
        ListFilter(until=T0 + 3 * hour - timedelta(seconds=1)),
        ListFilter(until=T0 - hour),
        ListFilter(since=T0 + hour, until=T0 + hour + timedelta(seconds=5)),
    ]
    try:
        for where in filters:
            for limit in (1, 2, 50):
                expected = await scan.list(where=where, limit=limit)
                assert await fast.list(where=where, limit=limit) == expected, (where, limit)
                assert await keyed.list(where=where, limit=limit) == expected, (where, limit)
                assert await fast.list(where=where, limit=limit, name="etl") == expected
                for status in ("succeeded", "failed"):
                    rows = await scan.list(where=where, limit=limit, status=status)
                    assert await fast.list(where=where, limit=limit, status=status) == rows
    finally:
        for views in (fast, scan, keyed):
            await views.close()


@pytest.mark.parametrize("size", [3, 1000], ids=["truncated", "whole"])
async def test_an_ended_status_with_filters_reads_its_recent_list(
    clean_nats: NATS, size: int
) -> None:
    # Twelve workflows, every third failed, the others succeeded; wf-7 failed and was then
    # retried (running again: it stays in the failed list, which must not show it). A list of 3
    # drops older members: it answers only while it holds enough matches, the index the rest.
    generations = Generations(clean_nats)
    await generations.ensure()
    await generations.close()
    store = ViewStore(clean_nats, generation=1)
    recent = RecentWriter(
        Direct(clean_nats, KV_STREAM),
        Publisher(clean_nats),
        prefix=KV_PREFIX,
        generation=1,
        size=size,
    )
    written: dict[int, Written] = {}
    seq = 0

    async def write(i: int, status: str) -> None:
        nonlocal seq
        seq += 1
        env = "prod" if i % 2 else "dev"
        view = _view(i, inputs={"env": env}, labels=("gpu",) if i % 4 else ())
        ended = status in ("failed", "succeeded")
        view = view.model_copy(
            update={"status": status, "ended_at": view.ended_at if ended else None}
        )
        written[i] = await store.write(view, seq, written.get(i, Written()))
        started = micros(view.started_at)
        await recent.note(view.workflow_id, name=view.name, status=status, started_us=started)

    for i in range(12):
        await write(i, "failed" if i % 3 == 1 else "succeeded")
    await write(7, "running")  # an operator's retry
    await recent.flush()
    await store.mark_index()
    await store.close()
    fast, scan = Views(clean_nats), Views(clean_nats, recent_lists=False, secondary=False)
    filters = [
        ListFilter(inputs={"env": "prod"}),
        ListFilter(inputs={"env": "dev"}),
        ListFilter(labels=("gpu",)),
        ListFilter(inputs={"env": "prod"}, labels=("gpu",)),
        ListFilter(inputs={"env": "staging"}),
        ListFilter(since=T0 + timedelta(hours=5)),
    ]
    try:
        prod_failed = await fast.list(status="failed", where=filters[0])
        assert [row.workflow_id for row in prod_failed] == ["wf-1"]  # wf-7 runs again
        for where in filters:
            for status in ("failed", "succeeded", "running"):
                for limit in (1, 2, 50):
                    expected = await scan.list(where=where, limit=limit, status=status)
                    found = await fast.list(where=where, limit=limit, status=status)
                    assert found == expected, (where, status, limit)
                    named = await fast.list(where=where, limit=limit, status=status, name="etl")
                    assert named == expected, (where, status, limit)
                    assert await fast.list(where=where, status=status, name="other") == []
    finally:
        for views in (fast, scan):
            await views.close()


async def test_a_filter_with_many_entries_walks_their_newest_back_to_the_marks(
    clean_nats: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Subjects with more entries than AT_ONCE (8 here) are read backwards from their newest
    # entry until the bound marks prove the rest older (keys.newest): the same rows as the
    # index scan, with entries written out of start order, batch by batch, marked after each.
    monkeypatch.setattr(keys, "AT_ONCE", 8)
    monkeypatch.setattr(keys, "_SPREAD", 0)  # first windows of 256 positions: several windows
    generations = Generations(clean_nats)
    await generations.ensure()
    await generations.close()
    store = ViewStore(clean_nats, generation=1)
    recent = RecentWriter(
        Direct(clean_nats, KV_STREAM), Publisher(clean_nats), prefix=KV_PREFIX, generation=1
    )
    rng = random.Random(3)
    for at in range(0, 300, 25):
        batch = list(range(at, at + 25))  # about in start order, as workflows start
        rng.shuffle(batch)
        for seq, i in enumerate(batch, start=at + 1):
            view = _view(
                i,
                inputs={"env": "prod" if i % 3 == 0 else "dev", "team": f"t{i % 7}"},
                labels=("gpu",) if i % 5 == 0 else (),
            )
            await store.write(view, seq, Written())
            started = micros(view.started_at)
            await recent.note(view.workflow_id, name="etl", status="succeeded", started_us=started)
        await recent.flush()
        await store.mark_index()
    await store.close()
    # The marks read only the start-hour entries: each workflow's must be stored before its
    # others, or a mark could bound an entry whose workflow's start it never read.
    reader = Direct(clean_nats, subjects.KEYS_STREAM)
    entries = await reader.all(keys.generation_filter(1))
    await reader.close()
    first: dict[str, str] = {}
    for stored in sorted(entries, key=lambda stored: stored.seq):
        held = keys.decode(stored) if stored.subject != keys.marks_subject(1) else []
        for entry in held:
            first.setdefault(entry.workflow_id, stored.subject)
    assert len(first) == 300
    assert all(subject.startswith("wfkey.g1.t0.") for subject in first.values()), first
    walked: list[list[object] | None] = []
    handed: list[int] = []  # entries each walk handed over for their summaries
    real_newest = keys.newest

    async def recording(*args: Any, accept: Any, **kwargs: Any) -> list[Any] | None:
        handed.append(0)

        async def counting(entries: list[keys.KeyEntry]) -> Any:
            handed[-1] += len(entries)
            return await accept(entries)

        found = await real_newest(*args, accept=counting, **kwargs)
        walked.append(found)
        return found

    monkeypatch.setattr(keys, "newest", recording)
    fast, scan = Views(clean_nats), Views(clean_nats, recent_lists=False, secondary=False)
    filters = [
        ListFilter(inputs={"env": "prod"}),
        ListFilter(inputs={"team": "t3"}),
        ListFilter(labels=("gpu",)),
        ListFilter(inputs={"env": "prod"}, labels=("gpu",)),
        ListFilter(inputs={"env": "prod"}, since=T0 + timedelta(hours=250)),
    ]
    try:
        for where in filters:
            for limit in (1, 7, 50):
                expected = await scan.list(where=where, limit=limit)
                assert expected, (where, limit)
                assert await fast.list(where=where, limit=limit) == expected, (where, limit)
        assert walked and all(found is not None for found in walked)  # the walk answered each
        handed.clear()
        await fast.list(where=filters[0], limit=7)
        # The marks ended it among the newest of env=prod's 100 entries, not after all of them.
        assert handed and handed[0] < 60, handed
    finally:
        await fast.close()
        await scan.close()
