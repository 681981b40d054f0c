"""Held views (projections.holding): which workflows are due, and for how many events."""

from __future__ import annotations

from projections.holding import Holds


def test_a_hold_gathers_events_until_taken() -> None:
    holds = Holds(limit=100)
    holds.add("a", 1, now=10.0)
    holds.add("a", 2, now=10.2)
    assert "a" in holds
    assert holds.since("a") == 10.0  # the first hold counts, not the latest
    assert holds.events == 3
    holds.take("a")
    assert "a" not in holds
    assert holds.events == 0
    holds.take("a")  # taking twice is harmless
    assert holds.since("a") is None


def test_holds_are_due_oldest_first_once_they_have_settled() -> None:
    holds = Holds(limit=100)
    holds.add("old", 1, now=1.0)
    holds.add("mid", 1, now=2.0)
    holds.add("new", 1, now=3.0)
    assert holds.due(now=2.4, settle=0.5) == ["old"]
    assert holds.due(now=2.5, settle=0.5) == ["old", "mid"]
    assert holds.due(now=1.2, settle=0.5) == []
    assert holds.next_due(0.5) == 1.5
    assert holds.everything() == ["old", "mid", "new"]


def test_beyond_the_limit_the_oldest_holds_are_due_at_once() -> None:
    holds = Holds(limit=3)
    holds.add("a", 2, now=1.0)
    holds.add("b", 2, now=1.1)
    holds.add("c", 1, now=1.2)
    # 5 held, limit 3: releasing "a" (2 events) is enough.
    assert holds.due(now=1.3, settle=60.0) == ["a"]
    holds.take("a")
    assert holds.due(now=1.3, settle=60.0) == []


def test_nothing_held_is_never_due() -> None:
    holds = Holds(limit=0)
    assert holds.due(now=100.0, settle=0.0) == []
    assert holds.next_due(1.0) is None
    assert len(holds) == 0
