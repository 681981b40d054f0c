"""When a schedule ticks, and what a tick that is handled now should start: pure functions.

A tick is an instant (UTC, whole milliseconds). ``every`` rules tick on multiples of their period
since the Unix epoch (``every: 1h`` on the hour, whichever server computes it); ``cron`` rules in
their time zone (croniter: daylight saving gaps and repeats as cron does them). A schedule's
ticks are the union of its rules' ticks (two rules ticking at one instant make one tick).

``plan_tick`` decides what the ticker does with the tick ``due`` when it handles it at ``now``:
- on time (no later tick of any rule has passed, and within ``MISSED_AFTER``): run it;
- late (the ticker, or everything, was down): each rule's ``catch_up`` says which of its ticks
  in ``[due, now]`` may still run: ``last`` its latest, ``skip`` only one less than
  ``MISSED_AFTER`` old. The latest of those runs, at most one; the others are missed;
- ``overlap: skip`` on the rule of the tick to run: nothing runs while the previous run is.
The next tick to wait for is always the first one after ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from croniter import croniter

from events.definition import ScheduleRule

# A tick handled more than this after it was due was missed (the schedule fired ~on time, but
# nothing could start it): ``catch_up: skip`` does not run it.
MISSED_AFTER: Final = timedelta(minutes=1)
_MS: Final = timedelta(milliseconds=1)


def _whole_ms(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def rule_next(rule: ScheduleRule, after: datetime) -> datetime:
    """The first tick of ``rule`` strictly after ``after``."""
    if rule.every is not None:
        period_ms = round(rule.every * 1000)
        after_ms = math.floor(after.timestamp() * 1000)
        return _from_ms((after_ms // period_ms + 1) * period_ms)
    zone = ZoneInfo(rule.timezone or "UTC")
    found: datetime = croniter(rule.cron or "", after.astimezone(zone)).get_next(datetime)
    return _whole_ms(found)


def rule_latest(rule: ScheduleRule, at_or_before: datetime) -> datetime:
    """The latest tick of ``rule`` at or before ``at_or_before``."""
    if rule.every is not None:
        period_ms = round(rule.every * 1000)
        at_ms = math.floor(at_or_before.timestamp() * 1000)
        return _from_ms(at_ms // period_ms * period_ms)
    zone = ZoneInfo(rule.timezone or "UTC")
    # get_prev is strictly before its start: start a millisecond later to include the instant.
    start = (at_or_before + _MS).astimezone(zone)
    found: datetime = croniter(rule.cron or "", start).get_prev(datetime)
    return _whole_ms(found)


def next_tick(rules: Sequence[ScheduleRule], after: datetime) -> datetime:
    """The schedule's first tick strictly after ``after``."""
    if not rules:
        raise ValueError("a schedule needs at least one rule")
    return min(rule_next(rule, after) for rule in rules)


def _from_ms(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC).replace(microsecond=(millis % 1000) * 1000)


@dataclass(frozen=True, slots=True)
class TickPlan:
    """``run``: the tick to start a run for (None: none); ``next``: the tick to wait for;
    ``missed``: ticks in ``[due, now]`` that were not run because they were late;
    ``overlapped``: the tick to run was skipped because the previous run is still running."""

    run: datetime | None
    next: datetime
    missed: bool = False
    overlapped: bool = False


def plan_tick(
    rules: Sequence[ScheduleRule],
    *,
    due: datetime,
    now: datetime,
    previous_running: bool,
) -> TickPlan:
    """What to do with the tick ``due`` handled at ``now`` (see the module's docstring)."""
    upcoming = next_tick(rules, max(now, due - _MS))
    if now < due:  # handled early (clocks apart): it is still this tick's turn
        return _overlap_checked(rules, due, upcoming, previous_running, missed=False)
    candidates: list[tuple[datetime, ScheduleRule]] = []
    for rule in rules:
        latest = rule_latest(rule, now)
        if latest >= due and (rule.catch_up == "last" or now - latest <= MISSED_AFTER):
            candidates.append((latest, rule))
    first = next_tick(rules, due - _MS)
    last = max(rule_latest(rule, now) for rule in rules)
    if not candidates:
        return TickPlan(run=None, next=upcoming, missed=first <= now)
    run = max(tick for tick, _ in candidates)
    return _overlap_checked(
        [rule for tick, rule in candidates if tick == run], run, upcoming, previous_running,
        missed=first < run or last > run,
    )  # fmt: skip


def _overlap_checked(
    rules: Sequence[ScheduleRule],
    run: datetime,
    upcoming: datetime,
    previous_running: bool,
    *,
    missed: bool,
) -> TickPlan:
    if previous_running and any(rule.overlap == "skip" for rule in rules):
        return TickPlan(run=None, next=upcoming, missed=missed, overlapped=True)
    next_after = upcoming if upcoming > run else next_tick(rules, run)
    return TickPlan(run=run, next=next_after, missed=missed)
