"""Durations as people write them in workflow files: ``500ms``, ``10s``, ``5m``, ``1h30m``, ``2d``.

Accepted forms:
- a number of seconds: ``10``, ``2.5`` (int or float, or the same as a string);
- one or more ``<number><unit>`` parts with units ``d`` (days), ``h``, ``m``, ``s``, ``ms``,
  largest unit first and each unit at most once, e.g. ``1h30m``, ``1m 30s``, ``1.5h``.

Days are always 24 hours (no calendars, no daylight saving). Durations are never negative.
Arithmetic is done in ``Decimal`` so ``1m0.1s`` is exactly ``60.1`` rather than ``60.099999...``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

ACCEPTED_FORMS: Final = (
    "a number of seconds or <number><unit> parts such as 500ms, 10s, 5m, 1h30m, 2d "
    "(units d, h, m, s, ms, largest first)"
)

# Largest first: the order a compound duration must be written in, and the order it is formatted.
_UNIT_SECONDS: Final[dict[str, Decimal]] = {
    "d": Decimal(86400),
    "h": Decimal(3600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)"
# `ms` must be tried before `m`, or "500ms" would read as 500 minutes followed by garbage.
_PART: Final = re.compile(rf"\s*({_NUMBER})(ms|d|h|m|s)")
_PLAIN_NUMBER: Final = re.compile(rf"^\s*{_NUMBER}\s*$")


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ``ValueError`` naming the value and the accepted forms."""
    if isinstance(value, bool):
        # bool is an int subclass: `timeout: true` is a mistake, not one second.
        raise ValueError(f"invalid duration {_shown(value)}: expected {ACCEPTED_FORMS}")
    if isinstance(value, int | float):
        return _checked(_to_float(value), value)
    if isinstance(value, str):
        return _from_text(value)
    raise ValueError(
        f"invalid duration {_shown(value)} ({type(value).__name__}): expected {ACCEPTED_FORMS}"
    )


def format_duration(seconds: float) -> str:
    """The canonical text of ``seconds`` (rounded to the millisecond): ``5400.0`` -> ``1h30m``."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {_shown(seconds)} as a duration: need a number >= 0")
    remaining = round(Decimal(repr(float(seconds))) * 1000)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNIT_SECONDS.items():
        in_ms = int(size * 1000)
        count, remaining = divmod(remaining, in_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _to_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range: as unusable as infinity
        return math.inf


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _checked(seconds: float, value: object) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {_shown(value)}: it must be a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {_shown(value)}: durations cannot be negative")
    return seconds


def _from_text(text: str) -> float:
    if _PLAIN_NUMBER.match(text):
        return _checked(float(text), text)
    total = Decimal(0)
    position = 0
    previous_rank = -1
    ranks = list(_UNIT_SECONDS)
    stripped = text.rstrip()
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None:
            raise ValueError(f"invalid duration {_shown(text)}: expected {ACCEPTED_FORMS}")
        number, unit = match.groups()
        rank = ranks.index(unit)
        if rank <= previous_rank:
            raise ValueError(
                f"invalid duration {_shown(text)}: write each unit once, largest first (like 1h30m)"
            )
        previous_rank = rank
        total += _decimal(number, text) * _UNIT_SECONDS[unit]
        position = match.end()
    if position == 0:
        raise ValueError(f"invalid duration {_shown(text)}: expected {ACCEPTED_FORMS}")
    return _checked(float(total), text)


def _decimal(number: str, text: str) -> Decimal:
    try:
        return Decimal(number)
    except InvalidOperation:  # the regex makes this unreachable; keep the message factual anyway
        raise ValueError(f"invalid duration {_shown(text)}: {number!r} is not a number") from None
