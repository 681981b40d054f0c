"""Held views (projections.holding): which workflows are due, and what each one releases."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from projections.holding import Holds


def msgs(*names: str) -> list[Any]:
    return [SimpleNamespace(name=name) for name in names]


def test_a_hold_gathers_messages_until_taken() -> None:
    holds = Holds(limit=100)
    holds.add("a", msgs("a1"), now=10.0)
    holds.add("a", msgs("a2", "a3"), now=10.2)
    assert "a" in holds
    assert holds.since("a") == 10.0  # the first hold counts, not the latest
    assert holds.messages == 3
    assert [m.name for m in holds.take("a")] == ["a1", "a2", "a3"]
    assert "a" not in holds
    assert holds.messages == 0
    assert holds.take("a") == []
    assert holds.since("a") is None


def test_holds_are_due_oldest_first_once_they_have_settled() -> None:
    holds = Holds(limit=100)
    holds.add("old", msgs("1"), now=1.0)
    holds.add("mid", msgs("2"), now=2.0)
    holds.add("new", msgs("3"), now=3.0)
    assert holds.due(now=2.4, settle=0.5) == ["old"]
    assert holds.due(now=2.5, settle=0.5) == ["old", "mid"]
    assert holds.due(now=1.2, settle=0.5) == []
    assert holds.next_due(0.5) == 1.5
    assert holds.everything() == ["old", "mid", "new"]


def test_beyond_the_limit_the_oldest_holds_are_due_at_once() -> None:
    holds = Holds(limit=3)
    holds.add("a", msgs("1", "2"), now=1.0)
    holds.add("b", msgs("3", "4"), now=1.1)
    holds.add("c", msgs("5"), now=1.2)
    # 5 held, limit 3: releasing "a" (2 messages) is enough.
    assert holds.due(now=1.3, settle=60.0) == ["a"]
    holds.take("a")
    assert holds.due(now=1.3, settle=60.0) == []


def test_nothing_held_is_never_due() -> None:
    holds = Holds(limit=0)
    assert holds.due(now=100.0, settle=0.0) == []
    assert holds.next_due(1.0) is None
    assert len(holds) == 0
