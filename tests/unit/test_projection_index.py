"""The listing index scan against an in-memory stream: exact newest-first for any write order,
any number of writers and any marks, however late they are published."""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections._nats import Stored
from projections.index import (
    IndexEntry,
    decode_entries,
    entry_filter,
    entry_subject,
    marks_subject,
    name_token,
    newest,
    next_mark,
)

EXAMPLES = int(os.environ.get("JW_EXAMPLES", "200"))
STATUSES = ("running", "succeeded", "failed", "cancelled")
NAMES = ("build", "etl")


def _matches(filter_subject: str, subject: str) -> bool:
    want, have = filter_subject.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


@dataclass
class MemoryStream:
    """Direct gets over a list of messages; deletes leave gaps, as in JetStream."""

    messages: dict[int, Stored] = field(default_factory=dict)
    last_seq: int = 0
    read: int = 0  # messages returned by ``next``

    def publish(self, subject: str, doc: dict[str, object]) -> int:
        self.last_seq += 1
        data = orjson.dumps(doc)
        self.messages[self.last_seq] = Stored(self.last_seq, subject, data, None)
        return self.last_seq

    async def last(self, subject: str) -> Stored | None:
        found = [m for m in self.messages.values() if _matches(subject, m.subject)]
        return max(found, key=lambda m: m.seq) if found else None

    async def next(self, filter_subject: str, *, from_seq: int, limit: int) -> tuple[list, int]:
        found = sorted(
            (
                m
                for s, m in self.messages.items()
                if s >= from_seq and _matches(filter_subject, m.subject)
            ),
            key=lambda m: m.seq,
        )
        self.read += len(found[:limit])
        return found[:limit], max(0, len(found) - limit)


@dataclass
class Workflow:
    wf: str
    name: str
    started: int
    status: str = "running"
    entry: int = 0


class Index:
    """Entries as any number of projectors write them: no writer remembers anything, so the
    order of the entries is all there is. Marks are computed and published separately."""

    def __init__(self) -> None:
        self.stream = MemoryStream()
        self.workflows: dict[str, Workflow] = {}

    def enter(self, workflow: Workflow, status: str) -> None:
        doc = {"wf": workflow.wf, "name": workflow.name, "status": status}
        doc["started"] = workflow.started
        seq = self.stream.publish(entry_subject(1, status, workflow.name), doc)
        if workflow.entry:
            del self.stream.messages[workflow.entry]
        workflow.status, workflow.entry = status, seq

    def compute_mark(self) -> dict[str, int] | None:
        return asyncio.run(next_mark(self.stream, 1))

    def publish_mark(self, doc: dict[str, int] | None) -> None:
        if doc is not None:
            self.stream.publish(marks_subject(1), doc)

    async def listing(
        self, status: str | None, name: str | None, limit: int, window: int
    ) -> list[str]:
        async def accept(entries: list[IndexEntry]) -> list[tuple[IndexEntry, str]]:
            return [
                (e, e.workflow_id) for e in entries if self.workflows[e.workflow_id].entry == e.seq
            ]

        return await newest(
            self.stream,
            1,
            status=status,
            name=name,
            limit=limit,
            accept=accept,
            first_window=window,
        )

    def truth(self, status: str | None, name: str | None, limit: int) -> list[str]:
        rows = [
            w
            for w in self.workflows.values()
            if (status is None or w.status == status) and (name is None or w.name == name)
        ]
        rows.sort(key=lambda w: (w.started, w.wf), reverse=True)
        return [w.wf for w in rows[:limit]]


# A history: workflows start (with any start time: clocks differ, and projectors publish their
# entries in whatever order their batches end) and later end; marks are computed now and then
# and published some operations later (a slow projector), or never (a crash).
operations = st.lists(
    st.tuples(
        st.integers(min_value=-8, max_value=8),  # start time, as an offset from the step
        st.sampled_from(NAMES),
        st.sampled_from(STATUSES),  # final status ("running": never ends)
        st.integers(min_value=0, max_value=30),  # how many operations later it ends
        st.integers(min_value=-1, max_value=20),  # a mark computed now, published this much later
    ),
    min_size=0,
    max_size=60,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    history=operations,
    outlier=st.integers(min_value=0, max_value=40),
    window=st.integers(min_value=1, max_value=8),
    limit=st.integers(min_value=1, max_value=12),
    status=st.sampled_from((None, *STATUSES)),
    name=st.sampled_from((None, *NAMES)),
)
def test_the_scan_returns_exactly_the_newest(history, outlier, window, limit, status, name) -> None:
    index = Index()
    endings: dict[int, list[tuple[Workflow, str]]] = {}
    marks: dict[int, list[dict[str, int] | None]] = {}
    for step, (jitter, wf_name, final, later, mark) in enumerate(history):
        # One workflow from a clock far ahead: the newest of all, early in the stream.
        started = 100 + step + jitter + (1000 if step == outlier else 0)
        workflow = Workflow(f"wf{step:03d}", wf_name, started)
        index.workflows[workflow.wf] = workflow
        index.enter(workflow, "running")
        if final != "running":
            endings.setdefault(step + later, []).append((workflow, final))
        for ending, final_status in endings.pop(step, []):
            index.enter(ending, final_status)
        if mark >= 0:
            marks.setdefault(step + mark, []).append(index.compute_mark())
        for doc in marks.pop(step, []):
            index.publish_mark(doc)
    for pending in endings.values():
        for ending, final_status in pending:
            index.enter(ending, final_status)
    for docs in marks.values():
        for doc in docs:
            index.publish_mark(doc)
    got = asyncio.run(index.listing(status, name, limit, window))
    assert got == index.truth(status, name, limit)


def test_a_mark_covers_the_entries_after_the_newest_mark_and_nothing_twice() -> None:
    index = Index()
    assert index.compute_mark() is None  # nothing to cover
    for i, started in enumerate([5, 50, 7]):
        workflow = Workflow(f"wf{i}", "build", started)
        index.workflows[workflow.wf] = workflow
        index.enter(workflow, "running")
    first = index.compute_mark()
    assert first == {"through": 3, "bound": 50}
    index.publish_mark(first)
    assert index.compute_mark() is None  # the mark itself is not an entry
    index.enter(index.workflows["wf0"], "succeeded")  # seq 5; entry 1 deleted
    assert index.compute_mark() == {"through": 5, "bound": 50}


def test_a_bound_from_another_writer_cannot_hide_the_newest_workflow() -> None:
    """The case that per-writer bounds got wrong: the newest workflow's entry comes early in the
    stream, then another writer publishes many older ones with what it believed the bound was."""
    index = Index()
    newest_one = Workflow("newest", "build", 10_000)
    index.workflows["newest"] = newest_one
    index.enter(newest_one, "running")
    for i in range(40):
        workflow = Workflow(f"old{i:02d}", "build", 100 + i)
        index.workflows[workflow.wf] = workflow
        doc = {"wf": workflow.wf, "name": "build", "status": "running", "started": 100 + i}
        doc["bound"] = 100 + i  # what a writer that never saw "newest" used to write
        workflow.entry = index.stream.publish(entry_subject(1, "running", "build"), doc)
        if i % 5 == 4:
            index.publish_mark(index.compute_mark())
    for window in (1, 4, 16):
        assert asyncio.run(index.listing("running", None, 1, window)) == ["newest"]
        assert asyncio.run(index.listing(None, "build", 3, window)) == ["newest", "old39", "old38"]


def test_a_mark_published_late_bounds_only_what_its_writer_read() -> None:
    index = Index()

    def start(wf: str, started: int) -> None:
        index.workflows[wf] = Workflow(wf, "build", started)
        index.enter(index.workflows[wf], "running")

    for i in range(5):
        start(f"early{i}", i)
    late = index.compute_mark()  # through the 5 entries so far, bound 4
    start("newest", 100)
    for i in range(10):
        start(f"old{i}", 10 + i)
    index.publish_mark(late)  # after all of them, but it says nothing about them
    for window in (1, 2, 4):
        assert asyncio.run(index.listing(None, None, 1, window)) == ["newest"]
        assert asyncio.run(index.listing("running", "build", 2, window)) == ["newest", "old9"]


def test_marks_every_64_entries_keep_a_shallow_listing_to_a_window_or_two() -> None:
    rng = random.Random(3)
    index = Index()
    running: list[Workflow] = []
    for step in range(3000):
        workflow = Workflow(f"wf{step:04d}", rng.choice(NAMES), step + rng.randrange(-20, 21))
        index.workflows[workflow.wf] = workflow
        index.enter(workflow, "running")
        running.append(workflow)
        if rng.random() < 0.5:
            index.enter(running.pop(rng.randrange(len(running))), rng.choice(STATUSES[1:]))
        if step % 32 == 31:
            index.publish_mark(index.compute_mark())
    for status in (None, *STATUSES):
        index.stream.read = 0
        got = asyncio.run(index.listing(status, None, 10, 256))
        assert got == index.truth(status, None, 10)
        read = index.stream.read
        assert read < 600, (status, read)  # of 3,000 entries; without marks: all of them


def test_entries_of_the_old_format_still_decode() -> None:
    doc = {"wf": "a", "name": "build", "status": "running", "started": 5, "bound": 9}
    entry = decode_entries(Stored(3, entry_subject(1, "running", "build"), orjson.dumps(doc), None))
    assert entry == [IndexEntry(3, "a", "build", "running", 5)]


def test_a_group_of_ended_workflows_decodes_to_an_entry_each() -> None:
    doc = {"name": "build", "status": "failed", "wfs": [["a", 5], ["b", 7]]}
    stored = Stored(4, entry_subject(1, "failed", "build"), orjson.dumps(doc), None)
    assert decode_entries(stored) == [
        IndexEntry(4, "a", "build", "failed", 5),
        IndexEntry(4, "b", "build", "failed", 7),
    ]
    broken = Stored(5, entry_subject(1, "failed", "build"), b'{"name": "build"}', None)
    assert decode_entries(broken) == []


def test_the_scan_over_groups_lists_only_the_members_still_listed_by_them() -> None:
    # Ten workflows ended together (one group), then two were retried (running again: their
    # summaries name their new entries); marks published as a projector does.
    index = Index()
    group = index.stream.publish(
        entry_subject(1, "succeeded", "build"),
        {"name": "build", "status": "succeeded", "wfs": [[f"wf{i}", i] for i in range(10)]},
    )
    for i in range(10):
        index.workflows[f"wf{i}"] = Workflow(f"wf{i}", "build", i, "succeeded", entry=group)
    index.publish_mark(index.compute_mark())
    for i in (9, 4):
        retried = index.workflows[f"wf{i}"]
        retried.entry = 0  # the group stays: it lists others still
        index.enter(retried, "running")
    index.publish_mark(index.compute_mark())
    for limit in (1, 3, 20):
        for status in ("succeeded", "running", None):
            got = asyncio.run(index.listing(status, None, limit, 2))
            assert got == index.truth(status, None, limit), (status, limit)


def test_an_entry_the_reader_rejects_is_not_listed_and_does_not_count() -> None:
    index = Index()
    for i in range(10):
        workflow = Workflow(f"wf{i}", "build", started=i)
        index.workflows[workflow.wf] = workflow
        index.enter(workflow, "running")
    # A leftover of a crashed write: an entry no summary points at.
    index.stream.publish(
        entry_subject(1, "running", "build"),
        {"wf": "ghost", "name": "build", "status": "running", "started": 99},
    )
    index.publish_mark(index.compute_mark())
    index.workflows["ghost"] = Workflow("ghost", "build", 99, entry=-1)
    assert asyncio.run(index.listing("running", None, 3, 2)) == ["wf9", "wf8", "wf7"]


def test_names_that_are_not_tokens_are_hashed_into_one() -> None:
    assert name_token("release") == "release"
    odd = name_token("has.dots and spaces")
    assert odd.startswith("~")
    assert "." not in odd
    assert " " not in odd
    assert name_token("~release") != "~release"
    assert entry_filter(3, status=None, name=None) == "wfidx.g3.*.*"
    assert entry_filter(3, status="failed", name="etl") == "wfidx.g3.failed.etl"
    assert entry_subject(3, "running", "etl") == "wfidx.g3.running.etl"
    assert marks_subject(3) == "wfidx.g3.bounds"  # one token short: no listing filter matches
