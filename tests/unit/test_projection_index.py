"""The listing index scan against an in-memory stream: exact newest-first for any write order."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections._nats import Stored
from projections.index import (
    IndexEntry,
    entry_filter,
    entry_subject,
    name_token,
    newest,
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
    bound: int = 0

    def publish(self, subject: str, doc: dict[str, object]) -> int:
        self.last_seq += 1
        data = orjson.dumps(doc)
        self.messages[self.last_seq] = Stored(self.last_seq, subject, data, {})
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
        return found[:limit], max(0, len(found) - limit)


@dataclass
class Workflow:
    wf: str
    name: str
    started: int
    status: str = "running"
    entry: int = 0


class Index:
    """The projector's side, in memory: one writer, bounds in publishing order."""

    def __init__(self) -> None:
        self.stream = MemoryStream()
        self.workflows: dict[str, Workflow] = {}

    def enter(self, workflow: Workflow, status: str) -> None:
        self.stream.bound = max(self.stream.bound, workflow.started)
        doc = {
            "wf": workflow.wf,
            "name": workflow.name,
            "status": status,
            "started": workflow.started,
            "bound": self.stream.bound,
        }
        seq = self.stream.publish(entry_subject(1, status, workflow.name), doc)
        if workflow.entry:
            del self.stream.messages[workflow.entry]
        workflow.status, workflow.entry = status, seq

    async def listing(
        self, status: str | None, name: str | None, limit: int, window: int
    ) -> list[str]:
        async def accept(entries: list[IndexEntry]) -> list[tuple[IndexEntry, str]]:
            return [
                (e, e.workflow_id) for e in entries if self.workflows[e.workflow_id].entry == e.seq
            ]

        return await newest(
            self.stream,
            entry_filter(1, status=status, name=name),
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


# A history: workflows start (with a start time, in any order) and later end.
operations = st.lists(
    st.tuples(
        st.integers(min_value=-8, max_value=8),  # start time, as an offset from the step
        st.sampled_from(NAMES),
        st.sampled_from(STATUSES),  # final status ("running": never ends)
        st.integers(min_value=0, max_value=30),  # how many operations later it ends
    ),
    min_size=0,
    max_size=60,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    history=operations,
    window=st.integers(min_value=1, max_value=8),
    limit=st.integers(min_value=1, max_value=12),
    status=st.sampled_from((None, *STATUSES)),
    name=st.sampled_from((None, *NAMES)),
)
def test_the_scan_returns_exactly_the_newest(history, window, limit, status, name) -> None:
    index = Index()
    endings: dict[int, list[tuple[Workflow, str]]] = {}
    for step, (jitter, wf_name, final, later) in enumerate(history):
        workflow = Workflow(f"wf{step:03d}", wf_name, 100 + step + jitter)
        index.workflows[workflow.wf] = workflow
        index.enter(workflow, "running")
        if final != "running":
            endings.setdefault(step + later, []).append((workflow, final))
        for ending, final_status in endings.pop(step, []):
            index.enter(ending, final_status)
    for pending in endings.values():
        for ending, final_status in pending:
            index.enter(ending, final_status)
    got = asyncio.run(index.listing(status, name, limit, window))
    assert got == index.truth(status, name, limit)


def test_an_entry_the_reader_rejects_is_not_listed_and_does_not_count() -> None:
    index = Index()
    for i in range(10):
        workflow = Workflow(f"wf{i}", "build", started=i)
        index.workflows[workflow.wf] = workflow
        index.enter(workflow, "running")
    # A leftover of a crashed write: an entry no summary points at.
    index.stream.publish(
        entry_subject(1, "running", "build"),
        {"wf": "ghost", "name": "build", "status": "running", "started": 99, "bound": 99},
    )
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
