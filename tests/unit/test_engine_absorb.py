"""The engine folds what it decides before the sequences are known, then ``absorb``s them.

Over every golden history, at every point: take the state folded so far, let "the engine" decide
an actor's next event (folded without a sequence, as ``react`` does), then absorb the sequence the
append landed at. The result must be the fold of the history up to that event: the same state and
the same CAS expectation for every actor.
"""

from __future__ import annotations

import dataclasses

import pytest

from actors import workflow
from actors.appends import Append
from actors.engine.states import absorb
from actors.workflow import WorkflowState
from events import subjects
from events.base import RecordedEvent
from events.catalog import JobEvent
from tests.unit.golden import load_golden
from tests.unit.test_golden_histories import SCENARIOS


def actor_filter(record: RecordedEvent) -> str:
    event = record.event
    if isinstance(event, JobEvent):
        return subjects.job_actor_filter(event.workflow_id, event.job)
    return subjects.workflow_actor_filter(event.workflow_id)


def without_stream_seq(state: WorkflowState) -> WorkflowState:
    return dataclasses.replace(state, stream_seq=0)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_decided_event_absorbed_is_the_straight_fold(name: str) -> None:
    recorded, _ = load_golden(name)
    for prefix in range(1, len(recorded)):
        state = workflow.replay(recorded[:prefix])
        record = recorded[prefix]
        decided = workflow.replay([record.event], state)  # folded without a sequence
        append = Append(actor_filter(record), 0, (record.event,))  # type: ignore[arg-type]
        absorbed = absorb(decided, [(append, record.seq)])
        expected = workflow.replay(recorded[: prefix + 1])
        assert without_stream_seq(absorbed) == without_stream_seq(expected), record.subject
