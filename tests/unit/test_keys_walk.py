"""The backward walk over one secondary subject (``projections.keys.newest``) against an
in-memory stream: exactly the newest matches for any write order and any marks, however late
they are published, and an honest "cannot tell" (None) past its budget."""

from __future__ import annotations

import asyncio
import os

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import keys
from projections.bounds import next_bound
from projections.search import ListFilter
from tests.unit.test_projection_index import MemoryStream

EXAMPLES = int(os.environ.get("JW_EXAMPLES", "200"))
WANTED = "wfkey.g1.i.wanted"
HOUR = "wfkey.g1.t0.1"  # every workflow's start-hour entry, stored before its others
SUBJECTS = (WANTED, "wfkey.g1.i.other", "wfkey.g1.l.gpu", "wfkey.g1.t1.1.2")


class Keys:
    def __init__(self) -> None:
        self.stream = MemoryStream()
        self.started: dict[str, int] = {}
        self.matching: set[str] = set()  # rows the other conditions of a filter keep

    def add(self, wf: str, started: int, subjects: list[str], matches: bool) -> None:
        self.started[wf] = started
        if matches:
            self.matching.add(wf)
        self.publish(wf, subjects)

    def publish(self, wf: str, subjects: list[str]) -> None:
        for subject in subjects:
            self.stream.publish(subject, {"wf": wf, "started": self.started[wf]})

    def compute_mark(self) -> dict[str, int] | None:
        return asyncio.run(
            next_bound(
                self.stream,
                marks=keys.marks_subject(1),
                covering=keys.time_filter(1, 0, None),  # the hour entries only, as keys.marker
                started_of=lambda stored: int(orjson.loads(stored.data)["started"]),
            )
        )

    def publish_mark(self, doc: dict[str, int] | None) -> None:
        if doc is not None:
            self.stream.publish(keys.marks_subject(1), doc)

    async def walk(
        self, limit: int, expected: int, budget: int, min_window: int = 256
    ) -> list[str] | None:
        async def accept(entries: list[keys.KeyEntry]) -> list[str]:
            return [e.workflow_id for e in entries if e.workflow_id in self.matching]

        return await keys.newest(
            self.stream,
            1,
            WANTED,
            ListFilter(),
            limit=limit,
            accept=accept,
            rank=lambda wf: (self.started[wf], wf),
            expected=expected,
            budget=budget,
            min_window=min_window,
        )

    def truth(self, limit: int) -> list[str]:
        wanted = {
            str(orjson.loads(m.data)["wf"])
            for m in self.stream.messages.values()
            if m.subject == WANTED
        }
        rows = sorted(wanted & self.matching, key=lambda wf: (self.started[wf], wf), reverse=True)
        return rows[:limit]


# Workflows whose first views are written concurrently: each one's hour entry now, its other
# entries (keys.add) some steps later, interleaved with other workflows' entries.
history = st.lists(
    st.tuples(
        st.integers(min_value=-8, max_value=8),  # start time, as an offset from the step
        st.sets(st.sampled_from(SUBJECTS)),  # what else it is listed under
        st.integers(min_value=0, max_value=5),  # how many steps later those entries are stored
        st.booleans(),  # whether the filter's other conditions keep it
        st.integers(min_value=-1, max_value=20),  # a mark computed now, published this much later
    ),
    max_size=60,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    steps=history,
    outlier=st.integers(min_value=0, max_value=40),
    limit=st.integers(min_value=1, max_value=12),
    expected=st.integers(min_value=1, max_value=100_000),  # sizes the first window only
    min_window=st.integers(min_value=1, max_value=8),
)
def test_the_walk_returns_exactly_the_newest_matches(
    steps, outlier, limit, expected, min_window
) -> None:
    store = Keys()
    marks: dict[int, list[dict[str, int] | None]] = {}
    rest: dict[int, list[tuple[str, list[str]]]] = {}
    for step, (jitter, subjects, later, matches, mark) in enumerate(steps):
        # Start times that may tie (ordered by id then); one workflow from a clock far ahead,
        # early in the stream.
        started = 100 + step + jitter + (1000 if step == outlier else 0)
        wf = f"wf{step:03d}"
        store.add(wf, started, [HOUR], matches)
        rest.setdefault(step + later, []).append((wf, sorted(subjects)))
        for waiting, others in rest.pop(step, []):
            store.publish(waiting, others)
        if mark >= 0:
            marks.setdefault(step + mark, []).append(store.compute_mark())
        for doc in marks.pop(step, []):
            store.publish_mark(doc)
    for pending in rest.values():
        for waiting, others in pending:
            store.publish(waiting, others)
    for docs in marks.values():
        for doc in docs:
            store.publish_mark(doc)
    got = asyncio.run(store.walk(limit, expected, budget=10**9, min_window=min_window))
    assert got == store.truth(limit)


def test_without_marks_the_walk_gives_up_at_its_budget_rather_than_read_everything() -> None:
    store = Keys()
    for step in range(1000):
        store.add(f"wf{step:04d}", step, [HOUR, WANTED], matches=True)
    # No mark: nothing proves the unread entries older, so only reading all of them could.
    assert asyncio.run(store.walk(5, expected=1000, budget=40)) is None
    store.publish_mark(store.compute_mark())
    for step in range(1000, 1010):
        store.add(f"wf{step:04d}", step, [HOUR, WANTED], matches=True)
    store.publish_mark(store.compute_mark())
    before = store.stream.read
    assert asyncio.run(store.walk(5, expected=1010, budget=40)) == [
        f"wf{step:04d}" for step in range(1009, 1004, -1)
    ]
    # With marks, it read the newest entries and stopped (not all 1,010 again).
    assert store.stream.read - before < 300
