"""Job priorities: ``priority: 1..10`` (10 first), and how a priority routes a dispatch.

A job's priority is its own, else its workflow's (the definition's top level, which a start may
set), else ``DEFAULT`` (5). JetStream delivers a consumer's messages in stream order, so a
priority cannot reorder one consumer: each priority other than the default has a dispatch
consumer of its own per label set. The default keeps the label set's one subject and consumer
(``evt.…JobQueued.<token>``), so a deployment that never sets a priority is routed exactly as
before; priority ``N`` adds a token, ``evt.…JobQueued.<token>.p<N>``, and its consumer is
``ls-<hash>-p<N>``. Workers pull a label set's priorities highest first
(``sdk/worker/ladder.py``). Pure functions: no I/O here.
"""

from __future__ import annotations

from typing import Final

LOWEST: Final = 1
HIGHEST: Final = 10
DEFAULT: Final = 5
"""What a job with no priority anywhere runs at: between the lowest and the highest, so that
work can be put behind it as well as before it."""
PREFIX: Final = "p"
"""The subject token of priority ``N`` is ``p<N>`` (and the consumer name's suffix ``-p<N>``)."""
RULE: Final = f"a whole number from {LOWEST} (lowest) to {HIGHEST} (highest)"


def effective(job: int | None, workflow: int | None) -> int | None:
    """A job's priority: its own, else its workflow's (None: neither set, the default)."""
    return job if job is not None else workflow


def level(priority: int | None) -> int | None:
    """The priority a dispatch is routed by: None for the default (the label set's own
    subject and consumer), else the priority itself."""
    return None if priority is None or priority == DEFAULT else priority


def rank(priority: int | None) -> int:
    """What to order by, highest first: a level's priority, the default's ``DEFAULT``."""
    return DEFAULT if priority is None else priority


def token(priority: int) -> str:
    """The subject token of a (non-default) priority level: ``p9``."""
    return f"{PREFIX}{priority}"


def parse_token(value: str) -> int | None:
    """The priority level a subject token names (``p9`` -> 9), or None when it names none."""
    if not value.startswith(PREFIX) or not value[len(PREFIX) :].isdigit():
        return None
    number = int(value[len(PREFIX) :])
    return number if LOWEST <= number <= HIGHEST and number != DEFAULT else None


def problem(value: object) -> str | None:
    """Why ``value`` is not a priority (None when it is one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be {RULE}, got {value!r}"
    if not LOWEST <= value <= HIGHEST:
        return f"must be {RULE}, got {value}"
    return None
