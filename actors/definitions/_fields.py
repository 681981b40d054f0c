"""Checking and normalising single fields; each helper logs its problem and returns ``None``.

Helpers return ``None`` both for "absent" and for "bad" so that callers can keep going and collect
every problem; the log, not the return value, decides whether a definition is built.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from actors.definitions._problems import Path, ProblemLog
from actors.definitions.durations import parse_duration
from events.subjects import is_valid_token

_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# Fields GitHub users reach for first, and what jetwork calls them.
_GITHUB_FIELD_HINTS: Final = {
    "runs-on": "use labels: [...] to choose workers",
    "continue-on-error": "use on_failure: continue",
    "timeout-minutes": "use timeout: 10m",
    "steps": "a jetwork job has no steps; put the commands in run",
    "on": "a workflow is started by a command, not by triggers",
    "with_": "the field is spelled with",
    "if_": "the field is spelled if",
}
TOKEN_RULE: Final = "use 1-128 letters, digits, '_' or '-'"


def describe(value: object) -> str:
    """A value's kind in words, for messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value!r})" if len(repr(value)) <= 20 else "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Sequence):
        return "a list"
    return f"a value of type {type(value).__name__}"


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def check_fields(
    raw: Mapping[Any, Any], path: Path, allowed: Iterable[str], log: ProblemLog
) -> None:
    allowed = tuple(allowed)
    for key in raw:
        if key in allowed:
            continue
        if not isinstance(key, str):
            log.add((*path, key), f"field names must be text, got {describe(key)}")
            continue
        log.add((*path, key), f"unknown field: {_field_hint(key, allowed)}")


def _field_hint(key: str, allowed: tuple[str, ...]) -> str:
    if key in _GITHUB_FIELD_HINTS:
        return _GITHUB_FIELD_HINTS[key]
    close = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "expected one of " + ", ".join(allowed)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def token(value: object, path: Path, log: ProblemLog, *, what: str) -> str | None:
    if not isinstance(value, str):
        log.add(path, f"{what} must be text, got {describe(value)}")
        return None
    if not is_valid_token(value):
        log.add(path, f"{what} {short(value)} is not a valid name: {TOKEN_RULE}")
        return None
    return value


def text(value: object, path: Path, log: ProblemLog, *, what: str) -> str | None:
    if not isinstance(value, str):
        log.add(path, f"{what} must be text, got {describe(value)}")
        return None
    if not value.strip():
        log.add(path, f"{what} is empty")
        return None
    return value


def duration(value: object, path: Path, log: ProblemLog, *, positive: bool) -> float | None:
    try:
        seconds = parse_duration(value)
    except ValueError as error:
        log.add(path, str(error))
        return None
    if positive and seconds == 0:
        log.add(path, f"{short(value)} must be longer than zero")
        return None
    return seconds


def name_list(value: object, path: Path, log: ProblemLog, *, what: str) -> list[tuple[str, Path]]:
    """Names with their locations (a single name is a list of one); duplicates are reported."""
    items: list[object] = [value] if isinstance(value, str) else _as_list(value, path, log)
    names: list[tuple[str, Path]] = []
    for index, item in enumerate(items):
        item_path = path if isinstance(value, str) else (*path, index)
        name = token(item, item_path, log, what=what)
        if name is None:
            continue
        if any(name == seen for seen, _ in names):
            log.add(item_path, f"{name!r} is listed twice")
            continue
        names.append((name, item_path))
    return names


def _as_list(value: object, path: Path, log: ProblemLog) -> list[object]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    log.add(path, f"expected a list, got {describe(value)}")
    return []


def env_map(value: object, path: Path, log: ProblemLog) -> dict[str, str]:
    """Environment variables: names as for a shell, scalar values as text."""
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping of NAME: value, got {describe(value)}")
        return {}
    env: dict[str, str] = {}
    for name, raw in value.items():
        item_path = (*path, name)
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            log.add(item_path, f"{short(name)} is not a valid environment variable name")
            continue
        converted = _env_value(raw)
        if converted is None:
            log.add(item_path, f"expected text, a number or a boolean, got {describe(raw)}")
            continue
        env[name] = converted
    return env


def _env_value(raw: object) -> str | None:
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float | str):
        return str(raw)
    return None


def json_value(value: object, path: Path, log: ProblemLog) -> Any:
    """``value`` as plain JSON data (dicts, lists, text, numbers, booleans, null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            log.add(path, f"{value!r} cannot be stored: use a finite number or text")
        return value
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                log.add((*path, key), f"keys must be text, got {describe(key)}")
                continue
            plain[key] = json_value(item, (*path, key), log)
        return plain
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [json_value(item, (*path, index), log) for index, item in enumerate(value)]
    log.add(path, f"{describe(value)} cannot be stored: use text, numbers, lists or mappings")
    return None


def timestamp(value: object, path: Path, log: ProblemLog) -> datetime | None:
    if isinstance(value, datetime):
        moment: datetime = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            log.add(path, f"{short(value)} is not an ISO 8601 time like 2026-12-01T08:00:00Z")
            return None
    else:
        log.add(path, f"expected an ISO 8601 time like 2026-12-01T08:00:00Z, got {describe(value)}")
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        shown = short(value if isinstance(value, str) else str(moment))
        log.add(path, f"{shown} has no time zone: add one, e.g. Z or +02:00")
        return None
    return moment
