"""The engine host folds its own appends instead of reading them back (``host._absorb``).

Over every golden history, at every point: take the state folded so far, let "the engine" append
an actor's next event (other actors' events may land before it), absorb it, then catch up by
replaying everything after the state's ``stream_seq`` (which holds that event again). The result
must be the straight fold of the whole history: nothing lost, nothing folded twice.
"""

from __future__ import annotations

import pytest

from actors import workflow
from actors.appends import Append
from actors.engine.host import _absorb
from events import subjects
from events.base import RecordedEvent
from events.catalog import JobEvent
from tests.unit.test_golden_histories import SCENARIOS, _load


def actor_filter(record: RecordedEvent) -> str:
    event = record.event
    if isinstance(event, JobEvent):
        return subjects.job_actor_filter(event.workflow_id, event.job)
    return subjects.workflow_actor_filter(event.workflow_id)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_an_absorbed_append_then_a_catch_up_is_the_straight_fold(name: str) -> None:
    recorded, _ = _load(name)
    whole = workflow.replay(recorded)
    checked = 0
    for prefix in range(1, len(recorded)):
        state = workflow.replay(recorded[:prefix])
        seen: set[str] = set()
        for record in recorded[prefix:]:
            actor = actor_filter(record)
            if actor in seen:
                continue  # only an actor's next event can be appended under its CAS
            seen.add(actor)
            append = Append(actor, 0, (record.event,))  # type: ignore[arg-type]
            absorbed = _absorb(state, [(append, record.seq)])
            assert absorbed is not None
            assert absorbed.stream_seq == state.stream_seq
            caught_up = workflow.replay([r for r in recorded if r.seq > state.stream_seq], absorbed)
            assert caught_up == whole, (prefix, record.subject)
            checked += 1
    assert checked > len(recorded)


def test_a_batch_of_several_events_is_read_back_instead() -> None:
    recorded, _ = _load("release")
    state = workflow.replay(recorded[:1])
    events = tuple(r.event for r in recorded[1:3])
    assert _absorb(state, [(Append("evt.x.wf.*", 0, events), recorded[2].seq)]) is None  # type: ignore[arg-type]
