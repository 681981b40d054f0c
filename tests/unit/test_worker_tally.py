"""A worker's periodic "jobs finished" line (``sdk.worker.tally``): the outcomes since the last
line, no line when nothing ended or before its time, and the totals for "worker stopped"."""

from __future__ import annotations

from sdk.worker.lifecycle import AttemptRef, JobEnded, Listeners
from sdk.worker.tally import Tally

REF = AttemptRef("wf", "job", 1, 1, "shell", "w1")


def _end(listeners: Listeners, outcome: str, times: int = 1) -> None:
    for _ in range(times):
        listeners.emit(f"job_{outcome}", JobEnded(REF, outcome, duration=0.1))  # type: ignore[arg-type]


def test_the_line_counts_the_outcomes_since_the_last_one() -> None:
    listeners, tally = Listeners(), Tally(every=0)
    tally.attach(listeners)
    assert tally.due() is None  # nothing ended: no line
    _end(listeners, "succeeded", 3)
    _end(listeners, "failed")
    first = tally.due()
    assert first is not None and {k: v for k, v in first.items() if k != "seconds"} == {
        "failed": 1,
        "succeeded": 3,
    }
    assert tally.due() is None
    _end(listeners, "succeeded")
    second = tally.due()
    assert second is not None and second["succeeded"] == 1 and "failed" not in second
    assert tally.totals() == {"failed": 1, "succeeded": 4}


def test_no_line_before_its_time() -> None:
    listeners, tally = Listeners(), Tally(every=3600)
    tally.attach(listeners)
    _end(listeners, "succeeded")
    assert tally.due() is None and tally.totals() == {"succeeded": 1}
