"""given(events) / when(command) / then(events): actor tests with no I/O.

    JOB.given(queued()).when(claim()).then(started())

``given`` folds the events with the actor's ``evolve``; ``when`` runs ``decide``; ``then``
compares the decided events field by field (as JSON, so a failure shows a readable diff).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import pytest

from actors import workflow
from actors.commands import AnyWorkflowCommand
from actors.workflow import WorkflowState
from events.base import Event

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E", bound=Event)
X = TypeVar("X", bound=Exception)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A fixed instant ``seconds`` after ``T0``: tests never read the real clock."""
    return T0 + timedelta(seconds=seconds)


def dump(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [{"type": e.event_type, **e.model_dump(mode="json", by_alias=True)} for e in events]


def assert_same_events(actual: Sequence[Event], expected: Sequence[Event]) -> None:
    got, want = dump(actual), dump(expected)
    if got != want:
        diff = difflib.unified_diff(_lines(want), _lines(got), "expected", "decided", lineterm="")
        raise AssertionError("decided events differ:\n" + "\n".join(diff))


def _lines(events: list[dict[str, Any]]) -> list[str]:
    return json.dumps(events, indent=1, sort_keys=True, default=str).splitlines()


@dataclass(frozen=True)
class Actor(Generic[S, C, E]):
    initial: Callable[[], S]
    evolve: Callable[[S, E], S]
    decide: Callable[[S, C], Sequence[E]]

    def given(self, *events: E) -> Given[S, C, E]:
        state = self.initial()
        for event in events:
            state = self.evolve(state, event)
        return Given(self, state)


@dataclass(frozen=True)
class Given(Generic[S, C, E]):
    actor: Actor[S, C, E]
    state: S

    def when(self, command: C) -> When[S, C, E]:
        return When(self.actor, self.state, command)


@dataclass(frozen=True)
class When(Generic[S, C, E]):
    actor: Actor[S, C, E]
    state: S
    command: C

    def events(self) -> list[E]:
        return list(self.actor.decide(self.state, self.command))

    def then(self, *expected: E) -> S:
        """Assert the decided events; return the state after them for further checks."""
        actual = self.events()
        assert_same_events(actual, expected)
        return self.state_after(actual)

    def then_nothing(self) -> S:
        return self.then()

    def then_raises(self, error: type[X], match: str | None = None) -> X:
        with pytest.raises(error, match=match) as info:
            self.actor.decide(self.state, self.command)
        return info.value

    def state_after(self, events: Sequence[E] | None = None) -> S:
        state = self.state
        for event in self.events() if events is None else events:
            state = self.actor.evolve(state, event)
        return state


def workflow_actor(
    workflow_id: str = "wf-1",
) -> Actor[WorkflowState, AnyWorkflowCommand, Event]:
    """The workflow actor of ``workflow_id``, for given/when/then tests."""
    return Actor(
        initial=lambda: WorkflowState(workflow_id=workflow_id),
        evolve=workflow.evolve,
        decide=workflow.decide,
    )
