"""What ``jetwork list`` filters on beyond status and name: start time, inputs, labels, parent.

A listing reads the index newest first (``projections.index``). The start-time bounds are
checked on the index entry itself (it carries the start), before any summary is read; ``since``
also ends the scan as soon as the index's bound marks say nothing older is left. Inputs, labels,
the parent and the end time are checked on the summary (``WorkflowSummary``), which the listing
reads anyway to drop stale entries. A filter that matches few workflows therefore reads more of
the index: bench/list_filters.py measures what that costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from actors.definitions import parse_duration
from projections.index import IndexEntry, micros
from projections.views import WorkflowSummary

__all__ = ["ListFilter", "input_text", "parse_moment"]


def parse_moment(text: str, *, now: datetime) -> datetime:
    """``2h`` (that long before ``now``) or an RFC 3339 time (UTC when it names no offset);
    ``ValueError`` naming both forms otherwise."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        found = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an RFC 3339 time "
            "(2026-12-01T08:00:00Z)"
        ) from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def input_text(value: Any) -> str:
    """How an input compares with ``--input KEY=VALUE``: a string as it is, anything else as
    its JSON (``3``, ``true``, ``["a"]``)."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Every condition must hold. ``since``/``until`` bound the start (inclusive); ``inputs``
    maps an input's name to its text (``input_text``); ``labels``: every one of them is needed
    by some job; ``parent``: started as a sub-workflow of it; ``ended_before``: ended, before
    then (what the retention deletes)."""

    since: datetime | None = None
    until: datetime | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    parent: str | None = None
    ended_before: datetime | None = None

    @property
    def active(self) -> bool:
        return bool(self.since or self.until or self.inputs or self.labels or self.parent) or (
            self.ended_before is not None
        )

    @property
    def since_us(self) -> int:
        return micros(self.since)

    def takes_entry(self, entry: IndexEntry) -> bool:
        if self.since is not None and entry.started_us < self.since_us:
            return False
        return self.until is None or entry.started_us <= micros(self.until)

    def takes_row(self, row: WorkflowSummary) -> bool:
        if self.parent is not None and row.parent_workflow_id != self.parent:
            return False
        if self.labels and not set(self.labels) <= set(row.labels):
            return False
        for key, text in self.inputs.items():
            if key not in row.inputs or input_text(row.inputs[key]) != text:
                return False
        if self.ended_before is not None:
            return row.ended_at is not None and row.ended_at < self.ended_before
        return True
