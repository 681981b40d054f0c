"""The fold stamps sequences in place on copies it made (``actors._state.stamped``): no state
handed out before may change afterwards, and the result equals a copy per event."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from actors import job_state, workflow
from actors._state import stamped, updated
from events.catalog import JobEvent
from tests.unit.golden import GOLDEN, load_golden


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_states_handed_out_never_change_and_equal_a_copy_per_event(path: Path) -> None:
    log, _ = load_golden(path.stem)
    handed_out = []
    state = None
    for record in log:
        state = workflow.replay([record], state)
        handed_out.append((state, repr(state)))
    for earlier, as_it_was in handed_out:
        assert repr(earlier) == as_it_was
    assert state == workflow.replay(log)
    for name, job in state.jobs.items():
        records = [r for r in log if isinstance(r.event, JobEvent) and r.event.job == name]
        if not records:
            continue
        copied = job_state.pending(state.workflow_id, name)
        for record in records:
            assert isinstance(record.event, JobEvent)
            copied = updated(job_state.evolve(copied, record.event), last_seq=record.seq)
        assert job_state.replay(records) == copied
        assert job.last_seq == copied.last_seq


@dataclass(frozen=True)
class _State:
    value: int
    last_seq: int = 0


def test_an_unchanged_state_is_copied_not_stamped() -> None:
    before = _State(1, last_seq=3)
    after = stamped(before, before, 7)
    assert after == _State(1, last_seq=7) and before.last_seq == 3
    fresh = updated(before, value=2)
    assert stamped(before, fresh, 9) is fresh and fresh.last_seq == 9 and before.last_seq == 3


def test_a_change_to_a_field_that_does_not_exist_is_refused() -> None:
    with pytest.raises(TypeError, match=r"_State has no field\(s\) \['valeu'\]"):
        updated(_State(1), valeu=2)
    assert updated(_State(1), value=2, last_seq=4) == _State(2, last_seq=4)
