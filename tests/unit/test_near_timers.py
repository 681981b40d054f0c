"""In-process timers for delays due soon (``events.schedules.NearTimers``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events.schedules import NearTimers
from tests.eventually import assert_eventually

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def test_a_delay_within_the_horizon_runs_in_process_and_one_beyond_does_not() -> None:
    ran: list[str] = []
    near = NearTimers(horizon=5.0, clock=lambda: T0)

    def action(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            ran.append(name)

        return run

    assert near.schedule(T0 + timedelta(milliseconds=20), action("soon"), what="soon")
    assert near.schedule(T0 - timedelta(seconds=3), action("overdue"), what="overdue")
    assert not near.schedule(T0 + timedelta(seconds=6), action("later"), what="later")
    await assert_eventually(lambda: len(ran) == 2, timeout=2)
    assert ran == ["overdue", "soon"]
    assert near.pending == 0


async def test_cancel_drops_what_is_pending_and_a_failing_action_is_only_logged() -> None:
    ran: list[str] = []
    near = NearTimers(clock=lambda: T0)

    async def fails() -> None:
        raise RuntimeError("server gone")

    async def would_run() -> None:
        ran.append("late")

    near.schedule(T0, fails, what="fails")
    near.schedule(T0 + timedelta(seconds=1), would_run, what="cancelled")
    await assert_eventually(lambda: near.pending == 1, timeout=2)  # the failure did not raise
    near.cancel()
    assert near.pending == 0
    assert ran == []


def test_a_horizon_of_zero_turns_them_off() -> None:
    near = NearTimers(horizon=0, clock=lambda: T0)

    async def never() -> None:
        raise AssertionError("must not run")

    assert not near.schedule(T0, never, what="off")
