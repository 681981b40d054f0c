"""Checks that run under every unit test."""

from __future__ import annotations

from datetime import datetime

import pytest

from actors import workflow
from actors._state import updated
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import JobStatus


@pytest.fixture(autouse=True)
def deciding_from_waiting_equals_looking_at_every_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``workflow._advance`` looks only at the jobs the fold keeps in ``state.waiting``: every
    decision any unit test makes is checked against looking at every job (``waiting`` None),
    and every pending job of ``order`` must be in ``waiting``."""
    original = workflow._advance

    def checked(state: WorkflowState, now: datetime) -> list[Event]:
        decided = original(state, now)
        if state.waiting is not None:
            pending = {n for n in state.order if state.job(n).status is JobStatus.PENDING}
            assert pending <= state.waiting, f"pending jobs not waiting: {pending - state.waiting}"
            assert original(updated(state, waiting=None), now) == decided
        return decided

    monkeypatch.setattr(workflow, "_advance", checked)
