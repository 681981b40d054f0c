"""A definition's ``version:`` and ``schedule:`` (``jetwork definitions`` and ``schedules``).

``schedule`` is a list of rules, each a ``cron`` expression (five fields, or ``@hourly``,
``@daily`` ...; in ``timezone``, an IANA name, UTC when unset) or a period ``every`` (at least a
second), with optional ``catch_up: last|skip`` and ``overlap: allow|skip``. Every problem is
located (``schedule[0].cron: ...``) like the rest of the file's.
"""

from __future__ import annotations

from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from actors.definitions import _fields as f
from actors.definitions._problems import Path, ProblemLog

RULE_FIELDS: Final = ("cron", "timezone", "every", "catch_up", "overlap")
MIN_EVERY: Final = 1.0  # message schedules fire on a 250 ms timer: a finer period means nothing
_CRON_ALIASES: Final = (
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
)
_CHOICES: Final = {"catch_up": ("last", "skip"), "overlap": ("allow", "skip")}


def read_version(value: object, log: ProblemLog) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        log.add(("version",), f"expected a whole number from 1 up, got {f.describe(value)}")
        return None
    return value


def read_schedule(value: object, log: ProblemLog) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        value = [value]  # one rule needs no list
    if not isinstance(value, list):
        log.add(("schedule",), f"expected a list of rules (cron or every), got {f.describe(value)}")
        return []
    if not value:
        log.add(("schedule",), "empty: give at least one rule, e.g. {every: 1h}")
    return [_read_rule(rule, ("schedule", index), log) for index, rule in enumerate(value)]


def _read_rule(raw: object, path: Path, log: ProblemLog) -> dict[str, Any]:
    if not isinstance(raw, dict):
        log.add(path, f"expected a mapping such as {{cron: '0 3 * * *'}}, got {f.describe(raw)}")
        return {}
    f.check_fields(raw, path, RULE_FIELDS, log)
    rule: dict[str, Any] = {}
    has_cron, has_every = raw.get("cron") is not None, raw.get("every") is not None
    if has_cron == has_every:
        log.add(path, "give exactly one of cron or every")
    if has_cron:
        rule["cron"] = _cron(raw["cron"], (*path, "cron"), log)
    if raw.get("timezone") is not None:
        if not has_cron:
            log.add((*path, "timezone"), "a timezone applies to a cron rule only")
        rule["timezone"] = _timezone(raw["timezone"], (*path, "timezone"), log)
    if has_every:
        every = f.duration(raw["every"], (*path, "every"), log, positive=True)
        if every is not None and every < MIN_EVERY:
            log.add((*path, "every"), f"{f.short(raw['every'])} is too short: at least 1s")
        rule["every"] = every
    for key, choices in _CHOICES.items():
        if raw.get(key) is not None:
            if raw[key] in choices:
                rule[key] = raw[key]
            else:
                log.add((*path, key), f"expected {' or '.join(choices)}, got {f.short(raw[key])}")
    return rule


def _cron(value: object, path: Path, log: ProblemLog) -> str | None:
    if not isinstance(value, str):
        log.add(path, f"expected a cron expression as text, got {f.describe(value)}")
        return None
    expression = " ".join(value.split())
    if expression in _CRON_ALIASES:
        return expression
    if len(expression.split(" ")) != 5:
        log.add(path, f"{value!r}: expected 5 fields (minute hour day month weekday) or @daily ...")
        return None
    if not croniter.is_valid(expression):
        log.add(path, f"{value!r} is not a valid cron expression")
        return None
    return expression


def _timezone(value: object, path: Path, log: ProblemLog) -> str | None:
    if not isinstance(value, str) or not value:
        log.add(path, f"expected a time zone name such as Europe/Berlin, got {f.describe(value)}")
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        log.add(path, f"unknown time zone {value!r} (an IANA name such as Europe/Berlin or UTC)")
        return None
    return value
