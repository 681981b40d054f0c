"""Listing entries written in groups (``projections.grouping``) on a real server: views written
together share one secondary entry message per subject and one status entry per ended status and
name; a workflow's start-hour group is stored before its others; listings find every workflow; a
retried workflow leaves its group to the others; a group goes only with its last member."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.errors import StoreError
from projections import Views, index, keys
from projections._nats import Direct, Stored
from projections.generations import Generations
from projections.grouping import GROUP
from projections.search import ListFilter
from projections.store import ViewStore, Written
from projections.views import WorkflowView

T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)


def _view(i: int, status: str = "succeeded") -> WorkflowView:
    started = T0 + timedelta(milliseconds=i)  # all within one second
    return WorkflowView(
        workflow_id=f"wf-{i:03}",
        name="etl",
        status=status,
        started_at=started,
        ended_at=started + timedelta(minutes=1) if status != "running" else None,
        inputs={"env": "prod" if i % 2 else "dev"},
        labels=("gpu",) if i % 3 == 0 else (),
    )


async def _store(nc: NATS) -> ViewStore:
    generations = Generations(nc)
    assert (await generations.ensure()).keyed
    await generations.close()
    return ViewStore(nc, generation=1)


async def _messages(nc: NATS, stream: str, every: str, marks: str) -> list[Stored]:
    reader = Direct(nc, stream)
    try:
        found = await reader.all(every)
    finally:
        await reader.close()
    return [stored for stored in found if stored.subject != marks]


async def _entry_messages(nc: NATS) -> list[Stored]:
    return await _messages(
        nc, subjects.KEYS_STREAM, keys.generation_filter(1), keys.marks_subject(1)
    )


async def _index_messages(nc: NATS) -> list[Stored]:
    return await _messages(
        nc, subjects.INDEX_STREAM, index.generation_filter(1), index.marks_subject(1)
    )


async def _ids(views: Views, status: str) -> list[str]:
    return [row.workflow_id for row in await views.list(status=status, limit=1000)]


async def test_views_written_together_share_a_message_per_subject(clean_nats: NATS) -> None:
    store = await _store(clean_nats)
    views = [_view(i) for i in range(300)]
    written = await asyncio.gather(*(store.write(v, 1, Written()) for v in views))
    await store.mark_index()
    await store.close()

    stored = await _entry_messages(clean_nats)
    listed: dict[str, set[str]] = defaultdict(set)  # subject -> workflows
    held_by: dict[str, list[int]] = defaultdict(list)  # workflow -> messages listing it
    for message in sorted(stored, key=lambda m: m.seq):
        for entry in keys.decode(message):
            listed[message.subject].add(entry.workflow_id)
            held_by[entry.workflow_id].append(message.seq)
    subjects_by_seq = {message.seq: message.subject for message in stored}
    every = {v.workflow_id for v in views}
    # Each subject lists exactly its workflows, in as few messages as GROUP allows.
    for view in views:
        for subject in keys.key_subjects(1, view):
            assert view.workflow_id in listed[subject]
    assert listed[keys.input_subject(1, "env", "prod")] == {f"wf-{i:03}" for i in range(1, 300, 2)}
    assert len(listed[keys.label_subject(1, "gpu")]) == 100
    per_subject: dict[str, int] = defaultdict(int)
    for message in stored:
        per_subject[message.subject] += 1
    hour = keys.time_subjects(1, int(T0.timestamp() * 1_000_000))[0]
    assert per_subject[hour] == -(-300 // GROUP), per_subject  # 2 messages, not 300
    assert len(stored) < 20, per_subject
    # The marks read only the hour entries: each workflow's hour group comes first.
    for wf in every:
        assert subjects_by_seq[held_by[wf][0]] == hour, wf
    # Each view names the messages that list it, and only those.
    for view, result in zip(views, written, strict=True):
        assert sorted(result.key_seqs) == sorted(held_by[view.workflow_id]), view.workflow_id

    fast, scan = Views(clean_nats), Views(clean_nats, recent_lists=False, secondary=False)
    try:
        for where in (ListFilter(inputs={"env": "prod"}), ListFilter(labels=("gpu",))):
            expected = await scan.list(where=where, limit=500)
            assert await fast.list(where=where, limit=500) == expected
            assert len(expected) in (150, 100)
    finally:
        await fast.close()
        await scan.close()


async def test_a_group_is_deleted_with_its_last_member(clean_nats: NATS) -> None:
    store = await _store(clean_nats)
    views = [_view(i) for i in (0, 6, 12)]  # one group per subject: dev, gpu, the three times
    written = await asyncio.gather(*(store.write(v, 1, Written()) for v in views))
    groups = {message.seq for message in await _entry_messages(clean_nats)}
    assert len(groups) == 5, groups

    for view, result in zip(views[:2], written[:2], strict=True):
        await store.remove(view.workflow_id, result)
        # A member is still stored: every group stays, the survivor is still listed by it.
        assert {message.seq for message in await _entry_messages(clean_nats)} == groups
    scan = Views(clean_nats, recent_lists=False, secondary=False)
    fast = Views(clean_nats)
    try:
        where = ListFilter(labels=("gpu",))
        rows = await fast.list(where=where)
        assert [row.workflow_id for row in rows] == ["wf-012"]
        assert rows == await scan.list(where=where)
    finally:
        await fast.close()
        await scan.close()

    await store.remove(views[2].workflow_id, written[2])
    assert await _entry_messages(clean_nats) == []
    assert await _index_messages(clean_nats) == []  # their status group went with the last
    await store.close()


def test_a_message_of_one_entry_as_written_before_groups_reads_the_same() -> None:
    def stored(seq: int, data: bytes) -> Stored:
        return Stored(seq=seq, subject="wfkey.g1.l.gpu", data=data, header_block=None)

    assert keys.decode(stored(7, b'{"wf":"wf-1","started":42}')) == [keys.KeyEntry(7, "wf-1", 42)]
    group = stored(8, keys.group_body([("wf-1", 42), ("wf-2", 43)]))
    assert keys.decode(group) == [keys.KeyEntry(8, "wf-1", 42), keys.KeyEntry(8, "wf-2", 43)]
    assert keys.decode(stored(9, b'{"wfs": [["wf-1"]]}')) == []


async def test_workflows_that_end_together_share_a_status_entry(clean_nats: NATS) -> None:
    store = await _store(clean_nats)
    views = [_view(i, "failed" if i % 10 == 0 else "succeeded") for i in range(300)]
    written = await asyncio.gather(*(store.write(v, 1, Written()) for v in views))
    await store.mark_index()
    stored = await _index_messages(clean_nats)
    # 270 succeeded in two groups, 30 failed in one: three messages, not 300.
    assert sorted(m.subject for m in stored) == [
        index.entry_subject(1, "failed", "etl"),
        *[index.entry_subject(1, "succeeded", "etl")] * 2,
    ]
    held = {e.workflow_id: e.seq for m in stored for e in index.decode_entries(m)}
    assert {r.index_seq for r in written} == {m.seq for m in stored}
    assert all(held[v.workflow_id] == r.index_seq for v, r in zip(views, written, strict=True))

    scan = Views(clean_nats, recent_lists=False, secondary=False)  # the status index alone
    try:
        newest_first = [v.workflow_id for v in reversed(views)]
        failed = [wf for wf in newest_first if int(wf[3:]) % 10 == 0]
        assert await _ids(scan, "failed") == failed
        assert await _ids(scan, "succeeded") == [wf for wf in newest_first if wf not in failed]

        # Two are retried: running again, each with an entry of its own; their group stays
        # for the others, and lists them only.
        retried = [views[20], views[7]]
        for old, result in zip(retried, (written[20], written[7]), strict=True):
            again = _view(int(old.workflow_id[3:]), "running")
            await store.write(again, 2, result)
        assert {m.seq for m in stored} <= {m.seq for m in await _index_messages(clean_nats)}
        assert await _ids(scan, "running") == ["wf-020", "wf-007"]
        assert await _ids(scan, "failed") == [wf for wf in failed if wf != "wf-020"]
        assert "wf-007" not in await _ids(scan, "succeeded")
    finally:
        await scan.close()
        await store.close()


async def test_a_status_group_goes_when_no_member_is_listed_by_it(clean_nats: NATS) -> None:
    store = await _store(clean_nats)
    views = [_view(i) for i in range(3)]
    written = list(await asyncio.gather(*(store.write(v, 1, Written()) for v in views)))
    (group,) = {r.index_seq for r in written}
    # One retried (its own running entry), one deleted: the third still keeps the group.
    rerun = await store.write(_view(0, "running"), 2, written[0])
    await store.remove(views[1].workflow_id, written[1])
    assert group in {m.seq for m in await _index_messages(clean_nats)}
    # The last one retried too: nobody is listed by the group any more.
    await store.write(_view(2, "running"), 2, written[2])
    remaining = await _index_messages(clean_nats)
    assert group not in {m.seq for m in remaining}
    assert sorted(e.workflow_id for m in remaining for e in index.decode_entries(m)) == [
        "wf-000",
        "wf-002",
    ]
    assert rerun.index_seq in {m.seq for m in remaining}
    await store.close()


async def _running_group(store: ViewStore, count: int) -> tuple[list[Written], int]:
    written = list(
        await asyncio.gather(
            *(store.write(_view(i, "running"), 1, Written()) for i in range(count))
        )
    )
    (group,) = {result.index_seq for result in written}
    return written, group


async def test_a_running_group_goes_with_the_last_workflow_it_lists(clean_nats: NATS) -> None:
    store = await _store(clean_nats)
    written, group = await _running_group(store, 5)
    scan = Views(clean_nats, recent_lists=False, secondary=False)
    try:
        running = [f"wf-{i:03}" for i in range(5)]
        for i in (3, 0, 4, 1):  # they end one by one
            await store.write(_view(i), 2, written[i])
            running.remove(f"wf-{i:03}")
            assert group in {m.seq for m in await _index_messages(clean_nats)}
            assert await _ids(scan, "running") == running[::-1]
        await store.write(_view(2), 2, written[2])
        assert group not in {m.seq for m in await _index_messages(clean_nats)}
        assert await _ids(scan, "running") == []
        assert len(await _ids(scan, "succeeded")) == 5
    finally:
        await scan.close()
        await store.close()


async def test_a_new_writer_learns_a_running_group_from_the_summaries(clean_nats: NATS) -> None:
    first = await _store(clean_nats)
    written, group = await _running_group(first, 4)
    await first.write(_view(0), 2, written[0])
    await first.close()
    # A restarted projector: nothing in memory about the group.
    second = ViewStore(clean_nats, generation=1)
    for i in (1, 2):
        await second.write(_view(i), 2, written[i])
        assert group in {m.seq for m in await _index_messages(clean_nats)}
    await second.write(_view(3), 2, written[3])
    assert group not in {m.seq for m in await _index_messages(clean_nats)}
    await second.close()


async def test_a_write_that_fails_leaves_its_group_to_the_others(
    clean_nats: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _store(clean_nats)
    real = ViewStore._compare_and_set

    async def failing(self: ViewStore, key: str, *args: object, **kwargs: object) -> int | None:
        if key.endswith("wf-001"):
            raise StoreError("the server went away", retryable=True)
        return await real(self, key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ViewStore, "_compare_and_set", failing)
    views = [_view(i, "running") for i in range(3)]
    results = await asyncio.gather(
        *(store.write(v, 1, Written()) for v in views), return_exceptions=True
    )
    assert isinstance(results[1], StoreError)
    written = [r for r in results if isinstance(r, Written)]
    (group,) = {r.index_seq for r in written}
    monkeypatch.setattr(ViewStore, "_compare_and_set", real)
    for i, result in zip((0, 2), written, strict=True):
        await store.write(_view(i), 2, result)
    # wf-001's view never named the group: it went with the two that did.
    assert group not in {m.seq for m in await _index_messages(clean_nats)}
    await store.close()
