"""The line of a job concurrency group (``sdk/worker/group_line.py``): given a line, when an
attempt is offered (or leaves), then who holds a slot, who waits in which order, who is
superseded. Pure: no server."""

from __future__ import annotations

import orjson

from sdk.worker import group_line
from sdk.worker.group_line import REFRESH_AFTER, WAIT_STALE, Holder, Line

NOW = 1_000_000.0


def attempt(seq: int, *, job: str = "deploy", attempt: int = 1, seen: float = NOW) -> Holder:
    return Holder(workflow_id=f"wf-{seq}", job=job, attempt=attempt, worker_id="w",
                  since=seen, seq=seq, seen=seen)  # fmt: skip


def offered(
    line: Line, newcomer: Holder, *, limit: int = 1, cancel: bool = False, now: float = NOW
) -> group_line.Outcome:
    return group_line.enter(line, newcomer, limit=limit, cancel_in_progress=cancel, now=now)


def seqs(members: tuple[Holder, ...]) -> list[int]:
    return [m.seq for m in members]


def test_given_a_free_slot_and_nobody_waiting_when_offered_then_it_holds_it() -> None:
    outcome = offered(Line(), attempt(5))
    assert outcome.entered
    assert seqs(outcome.line.holders) == [5] and outcome.line.waiting == ()


def test_given_a_full_group_when_offered_then_the_attempts_wait_in_queue_order() -> None:
    line = offered(Line(), attempt(1)).line
    for seq in (9, 4, 7):  # offered out of order
        outcome = offered(line, attempt(seq))
        assert not outcome.entered
        line = outcome.line
    assert seqs(line.waiting) == [4, 7, 9]


def test_given_an_earlier_waiter_when_a_later_one_is_offered_a_free_slot_then_it_waits() -> None:
    line = Line(waiting=(attempt(4),))  # the holder left; 4's dispatch has not come back yet
    later = offered(line, attempt(7))
    assert not later.entered and seqs(later.line.waiting) == [4, 7]
    first = offered(later.line, attempt(4))
    assert first.entered
    assert seqs(first.line.holders) == [4] and seqs(first.line.waiting) == [7]


def test_given_two_free_slots_when_the_second_in_line_is_offered_then_it_takes_one() -> None:
    line = Line(waiting=(attempt(4), attempt(7), attempt(9)))
    outcome = offered(line, attempt(7), limit=2)
    assert outcome.entered
    assert seqs(outcome.line.holders) == [7] and seqs(outcome.line.waiting) == [4, 9]
    assert not offered(outcome.line, attempt(9), limit=2).entered  # 4's slot is kept for it


def test_given_a_holder_when_its_job_is_offered_again_then_it_takes_its_slot_over() -> None:
    line = Line(holders=(attempt(1),), waiting=(attempt(2),))
    outcome = offered(line, attempt(1).model_copy(update={"worker_id": "other"}))
    assert outcome.entered
    assert [h.worker_id for h in outcome.line.holders] == ["other"]
    assert seqs(outcome.line.waiting) == [2]


def test_given_a_waiter_not_seen_for_long_when_another_is_offered_then_it_loses_its_place() -> None:
    gone = attempt(3, seen=NOW - WAIT_STALE - 0.1)
    outcome = offered(Line(waiting=(gone,)), attempt(8))
    assert outcome.entered and outcome.line.waiting == ()
    back = offered(Line(holders=(attempt(8),), waiting=(attempt(9),)), gone)
    assert seqs(back.line.waiting) == [3, 9]  # back in its place, by its queue order


def test_given_a_waiter_seen_just_now_when_offered_again_then_nothing_is_written() -> None:
    line = Line(holders=(attempt(1),), waiting=(attempt(2),))
    assert offered(line, attempt(2), now=NOW + REFRESH_AFTER - 0.1).line == line
    refreshed = offered(line, attempt(2), now=NOW + REFRESH_AFTER).line
    assert [w.seen for w in refreshed.waiting] == [NOW + REFRESH_AFTER]


def test_given_an_older_attempt_of_the_job_waiting_when_a_retry_is_offered_then_it_replaces_it(
) -> None:  # fmt: skip
    line = Line(holders=(attempt(1),), waiting=(attempt(2, job="build"),))
    retry = attempt(6, job="build", attempt=2).model_copy(update={"workflow_id": "wf-2"})
    outcome = offered(line, retry)
    assert [(w.seq, w.attempt) for w in outcome.line.waiting] == [(6, 2)]


def test_when_an_attempt_leaves_then_its_slot_or_place_is_free() -> None:
    line = Line(holders=(attempt(1),), waiting=(attempt(2), attempt(3)))
    assert group_line.leave(line, attempt(1)) == Line(waiting=(attempt(2), attempt(3)))
    assert group_line.leave(line, attempt(2)) == Line(holders=(attempt(1),), waiting=(attempt(3),))
    other_attempt = attempt(1, attempt=2)
    assert group_line.leave(line, other_attempt) == line


def test_given_stale_holders_found_in_the_log_then_they_are_dropped() -> None:
    line = Line(holders=(attempt(1), attempt(2)), waiting=(attempt(3),))
    assert group_line.without(line, [attempt(1)]).holders == (attempt(2),)


def test_given_cancel_in_progress_when_a_newcomer_comes_then_the_older_members_are_superseded(
) -> None:  # fmt: skip
    line = Line(holders=(attempt(1),), waiting=(attempt(2),))
    outcome = offered(line, attempt(3), cancel=True)
    assert seqs(outcome.superseded) == [1, 2]
    assert not outcome.entered  # 1 still holds its slot until it stops
    assert seqs(outcome.line.holders) == [1] and seqs(outcome.line.waiting) == [3]
    freed = offered(group_line.leave(outcome.line, attempt(1)), attempt(3), cancel=True)
    assert freed.entered and freed.superseded == ()


def test_given_cancel_in_progress_when_an_older_attempt_comes_late_then_it_is_superseded() -> None:
    line = Line(holders=(attempt(5),))
    outcome = offered(line, attempt(2), cancel=True)
    assert seqs(outcome.superseded) == [2] and not outcome.entered
    assert outcome.line == line


def test_given_cancel_in_progress_and_room_when_offered_then_nobody_is_superseded() -> None:
    outcome = offered(Line(holders=(attempt(1),)), attempt(2), limit=2, cancel=True)
    assert outcome.entered and outcome.superseded == ()


def test_a_stored_list_of_holders_reads_as_a_line_without_waiters() -> None:
    stored = orjson.dumps([attempt(1).model_dump()])
    assert group_line.decode(stored) == Line(holders=(attempt(1),))
    line = Line(holders=(attempt(1),), waiting=(attempt(2),))
    assert group_line.decode(group_line.encode(line)) == line
    assert group_line.decode(b"") == Line()
