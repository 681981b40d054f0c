"""Recent lists (newest K of an insert-only listing) and what makes a workflow's birth."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import subjects
from events.ordered_feed import Delivered
from projections.folding import is_birth
from projections.projector import ProjectorSettings
from projections.recent import Recent, _Doc, decode, list_id, lists_of

EXAMPLES = int(os.environ.get("JW_EXAMPLES", "200"))


def newest(doc: _Doc) -> list[tuple[int, str]]:
    return decode(doc.encode()).entries


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=6),
    starts=st.lists(st.integers(min_value=0, max_value=20), min_size=10, max_size=10),
    notes=st.lists(st.integers(min_value=0, max_value=9), max_size=40),
)
def test_a_recent_list_keeps_exactly_the_newest_members(size, starts, notes) -> None:
    """Workflows noted in any order, any number of times (a start never changes)."""
    doc = _Doc(size=size)
    for i in notes:
        doc.add(f"wf{i}", starts[i])
    noted = {(starts[i], f"wf{i}") for i in notes}
    assert newest(doc) == sorted(noted, reverse=True)[:size]
    assert decode(doc.encode()).truncated == (len(noted) > size)


def test_the_newest_survive_and_the_list_says_it_was_cut() -> None:
    doc = _Doc(size=3)
    for started in [5, 1, 9, 7, 3, 8]:
        doc.add(f"wf{started}", started)
    recent = decode(doc.encode())
    assert recent.entries == [(9, "wf9"), (8, "wf8"), (7, "wf7")]
    assert recent.truncated
    doc.add("wf9", 9)  # noting again changes nothing
    assert newest(doc) == recent.entries


def test_ties_on_start_are_ordered_by_id_like_the_index_scan() -> None:
    doc = _Doc(size=10)
    for wf in ["b", "a", "c"]:
        doc.add(wf, 5)
    assert newest(doc) == [(5, "c"), (5, "b"), (5, "a")]


def test_reloading_keeps_notes_not_yet_written() -> None:
    doc = _Doc(size=2)
    doc.add("mine", 10)
    # Another writer stored a list meanwhile: ours merges into it.
    doc.load(Recent(entries=[(12, "theirs"), (3, "old")], truncated=False), revision=7)
    assert newest(doc) == [(12, "theirs"), (10, "mine")]
    assert doc.pending == {"mine": 10}
    assert doc.revision == 7


def test_which_lists_serve_which_filter() -> None:
    assert list_id(status=None, name=None) == "all"
    assert list_id(status=None, name="etl") == "n.etl"
    assert list_id(status="failed", name=None) == "s.failed"
    assert list_id(status="failed", name="etl") == "sn.failed.etl"
    assert list_id(status="running", name="etl") is None  # workflows leave it: index scan
    assert lists_of("etl", "running") == ["all", "n.etl"]
    assert lists_of("etl", "cancelled") == ["all", "n.etl", "s.cancelled", "sn.cancelled.etl"]


def birth(
    headers: dict[str, str] | None,
    subject: str = subjects.workflow_event("wf", "WorkflowStarted"),
) -> Delivered:
    return Delivered(subject, b"{}", headers, seq=1, time=datetime.now(UTC), pending=0)


def test_a_birth_is_a_start_appended_under_no_event_yet() -> None:
    headers = {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": subjects.workflow_actor_filter("wf"),
    }
    assert is_birth("wf", birth(headers))
    assert not is_birth("wf", birth({**headers, "Nats-Expected-Last-Subject-Sequence": "4"}))
    assert not is_birth("wf", birth(None))
    assert not is_birth("wf", birth(headers, subjects.job_event("wf", "a", "JobStarted")))
    assert not is_birth("other", birth(headers))


def test_settings_from_the_environment() -> None:
    loaded = ProjectorSettings.from_env(
        {"JETWORK_PROJECTOR_BATCH": "64", "JETWORK_PROJECTOR_CACHE_SIZE": "10"}
    )
    assert (loaded.batch, loaded.cache_size) == (64, 10)
    assert loaded.concurrency == ProjectorSettings().concurrency
    with pytest.raises(ValueError, match="JETWORK_PROJECTOR_BATCH"):
        ProjectorSettings.from_env({"JETWORK_PROJECTOR_BATCH": "lots"})


def test_random_notes_match_a_sort() -> None:
    rng = random.Random(3)
    doc = _Doc(size=50)
    starts = {f"wf{i}": rng.randrange(1000) for i in range(500)}
    for wf, started in starts.items():
        doc.add(wf, started)
    expected = sorted(((s, wf) for wf, s in starts.items()), reverse=True)[:50]
    assert newest(doc) == expected
