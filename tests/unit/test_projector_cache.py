"""The projector's states in memory (``projections.writing.HeldViews``): over its size, the least
recently used go, never a held one (its state is what gets written)."""

from __future__ import annotations

from collections import OrderedDict

from actors.workflow import WorkflowState
from projections.holding import Holds
from projections.projector import ProjectorSettings
from projections.store import Written
from projections.writing import HeldViews, Tracked


class Cache(HeldViews):
    def __init__(self, size: int) -> None:
        self._settings = ProjectorSettings(cache_size=size)
        self._cache = OrderedDict()
        self._holds = Holds(limit=1000)

    def remember(self, wf: str) -> None:
        self._remember(wf, Tracked(WorkflowState(workflow_id=wf), Written(), 0))

    def hold(self, wf: str) -> None:
        self._holds.add(wf, 1, 0.0)


def test_the_least_recently_used_go_but_not_held_ones() -> None:
    cache = Cache(3)
    for wf in "abc":
        cache.remember(wf)
    cache.hold("a")
    cache.remember("d")  # one too many: b, the oldest not held, goes
    assert list(cache._cache) == ["a", "c", "d"]
    cache.remember("c")  # used again: now the newest
    cache.remember("e")
    assert list(cache._cache) == ["a", "c", "e"]


def test_many_held_states_stay_and_the_rest_go_oldest_first() -> None:
    cache = Cache(100)
    for n in range(100):
        cache.remember(f"held{n}")
        cache.hold(f"held{n}")
    for n in range(50):
        cache.remember(f"free{n}")
    # Every held one stays; the free ones go (the cache is full of held ones).
    assert sum(wf.startswith("held") for wf in cache._cache) == 100
    assert len(cache._cache) == 100
    for n in range(0, 100, 2):
        cache._holds.take(f"held{n}")  # written: no longer held
    cache.remember("late")
    assert "late" in cache._cache and "held0" not in cache._cache  # the oldest unheld went
    assert len(cache._cache) == 100
