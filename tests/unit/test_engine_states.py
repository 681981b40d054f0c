"""The states an engine keeps in memory belong to its tenure of their partition.

Found by the short chaos run: a batch in flight when its partition was given up (a rebalance)
kept its workflows' states after the engine had dropped them; the engine took the partition
back later and decided on those states, missing what the other owner had appended meanwhile —
"not ready" for a join whose upstreams had all succeeded, a retry queued with an epoch already
used. A state decided under an ended tenure is no longer kept.
"""

from __future__ import annotations

from typing import Any

from actors._state import updated
from actors.engine.states import BATCH_POSITION, States, lacks_earlier_part
from actors.workflow import WorkflowState
from events.subjects import partition_of


def states() -> States:
    nothing: Any = None  # keeping and dropping states reads nothing
    return States(nothing, nothing, size=100)


def workflow_in(partition: int, other_than: str = "") -> str:
    return next(
        wf for n in range(10_000) if partition_of(wf := f"wf-{n}") == partition and wf != other_than
    )


def test_giving_a_partition_up_drops_its_states_and_only_them() -> None:
    memory = states()
    mine, other = workflow_in(3), workflow_in(5)
    memory.put(WorkflowState(workflow_id=mine))
    memory.put(WorkflowState(workflow_id=other))
    memory.give_up(3)
    assert memory.get(mine) is None
    assert memory.get(other) is not None


def test_a_state_decided_under_an_ended_tenure_is_not_kept() -> None:
    memory = states()
    wf = workflow_in(3)
    tenure = memory.tenure(3)  # a batch takes a message of partition 3...
    memory.give_up(3)  # ...the partition is given up while the batch appends...
    memory.put(WorkflowState(workflow_id=wf), tenure=tenure)  # ...and the batch carries out
    assert memory.get(wf) is None


def test_a_state_decided_under_the_current_tenure_is_kept() -> None:
    memory = states()
    memory.give_up(3)  # an earlier tenure ended long ago
    wf = workflow_in(3)
    memory.put(WorkflowState(workflow_id=wf), tenure=memory.tenure(3))
    assert memory.get(wf) is not None
    other = workflow_in(4)
    memory.put(WorkflowState(workflow_id=other), tenure=memory.tenure(4))  # other partitions
    assert memory.get(other) is not None


def _with_job_at(seq: int) -> WorkflowState:
    state = WorkflowState(workflow_id="wf")
    return updated(state, jobs={"a": updated(state.job("a"), last_seq=seq)})


def test_a_later_part_of_an_atomic_append_asks_for_the_part_before_it() -> None:
    second = {BATCH_POSITION: "2"}
    # JobFailed at 729, JobRetryScheduled at 730: the state must hold 729 to fold 730.
    assert lacks_earlier_part(_with_job_at(717), "a", 730, second)
    assert not lacks_earlier_part(_with_job_at(729), "a", 730, second)
    assert not lacks_earlier_part(_with_job_at(740), "a", 730, second)  # read from the log


def test_a_single_append_or_a_first_part_asks_for_nothing() -> None:
    # A result after a claim the engine never follows (JobStarted) is not a gap.
    assert not lacks_earlier_part(_with_job_at(717), "a", 730, None)
    assert not lacks_earlier_part(_with_job_at(717), "a", 730, {"Nats-Msg-Id": "x"})
    assert not lacks_earlier_part(_with_job_at(717), "a", 730, {BATCH_POSITION: "1"})
    assert not lacks_earlier_part(_with_job_at(717), "a", 730, {BATCH_POSITION: "x"})
