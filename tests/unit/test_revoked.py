"""Which dispatches a worker may run before their claim is appended (``sdk/worker/revoked.py``)."""

from __future__ import annotations

from sdk.worker.revoked import Revoked


def test_nothing_runs_unclaimed_before_the_worker_listens() -> None:
    assert not Revoked().may_run_unclaimed("wf", "j", 10)


def test_only_dispatches_queued_after_the_worker_listens_run_unclaimed() -> None:
    revoked = Revoked()
    revoked.listening(100)
    assert not revoked.may_run_unclaimed("wf", "j", 100)  # queued before: a notice may be lost
    assert revoked.may_run_unclaimed("wf", "j", 101)


def test_a_job_named_by_a_notice_is_claimed_first() -> None:
    revoked = Revoked()
    revoked.listening(0)
    revoked.told("wf", "j")
    assert not revoked.may_run_unclaimed("wf", "j", 5)
    assert revoked.may_run_unclaimed("wf", "other", 5)


def test_a_dropped_connection_deafens_until_listening_again() -> None:
    revoked = Revoked()
    revoked.listening(10)
    revoked.deaf()
    assert not revoked.may_run_unclaimed("wf", "j", 11)
    revoked.listening(50)
    assert not revoked.may_run_unclaimed("wf", "j", 49)
    assert revoked.may_run_unclaimed("wf", "j", 51)


def test_the_oldest_notices_go_first_past_the_bound() -> None:
    revoked = Revoked(kept=2)
    revoked.listening(0)
    for job in ("a", "b", "c"):
        revoked.told("wf", job)
    assert revoked.may_run_unclaimed("wf", "a", 1)  # forgotten
    assert not revoked.may_run_unclaimed("wf", "b", 1)
    assert not revoked.may_run_unclaimed("wf", "c", 1)
    revoked.told("wf", "b")  # told again: newest now
    revoked.told("wf", "d")
    assert not revoked.may_run_unclaimed("wf", "b", 1)
    assert revoked.may_run_unclaimed("wf", "c", 1)
