"""When a message schedule fires: ``Nats-Schedule: @at <RFC 3339>`` with milliseconds.

nats-server 2.15 takes fractional seconds in ``@at`` and fires a due schedule from a timer it
never runs more often than every 250 ms (``server/scheduler.go``), so a schedule fires 0-250 ms
after it is due (measured here: p50 +140 ms, max +250 ms). That is durable, and good enough for
long delays; what must be exact is also timed in process by its owner (``actors.engine.timers``),
the durable schedule then finding nothing left to do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def schedule_time(due: datetime) -> str:
    """The ``@at`` value for ``due``: RFC 3339 in UTC with milliseconds, rounded **up**.

    A schedule must never fire early (a job claimable before it is due, a timer firing before
    its deadline), so a sub-millisecond remainder goes to the next millisecond.
    """
    utc = due.astimezone(UTC)
    millis = -(-utc.microsecond // 1000)  # ceiling
    whole = utc.replace(microsecond=0) + timedelta(milliseconds=millis)
    return whole.strftime("%Y-%m-%dT%H:%M:%S.") + f"{whole.microsecond // 1000:03d}Z"
