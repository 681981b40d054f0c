"""What ``jetwork list`` filters on beyond status and name: start time, inputs, labels, parent.

Without a status, a filtered listing first walks the recent list of every status ("all", or the
name's): it holds the newest workflows by start exactly, so the first ``limit`` matches in it
are the newest matches of all (``from_recent``); with an ended status, that status's list the
same way. When it holds fewer (a rare match, an ``until``
older than its members) the listing reads the index newest first (``projections.index``). The
start-time bounds are
checked on the index entry itself (it carries the start), before any summary is read; ``since``
also ends the scan as soon as the index's bound marks say nothing older is left. Inputs, labels,
the parent and the end time are checked on the summary (``WorkflowSummary``), which the listing
reads anyway to drop stale entries. A filter that matches few workflows therefore reads more of
the index: bench/list_filters.py measures what that costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from actors.definitions import parse_duration
from projections.index import IndexEntry, micros
from projections.recent import Recent
from projections.views import WorkflowSummary

if TYPE_CHECKING:
    from projections.store import StoredSummary

__all__ = ["ListFilter", "from_recent", "input_text", "parse_moment"]

_CHUNK = 256


class _Summaries(Protocol):
    async def summaries(
        self, wfs: Sequence[str], *, keep: Callable[[Any], bool] | None = None
    ) -> dict[str, StoredSummary]: ...


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
        return self.takes_start(entry.started_us)

    def takes_start(self, started_us: int) -> bool:
        if self.since is not None and started_us < self.since_us:
            return False
        return self.until is None or started_us <= micros(self.until)

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

    def precheck(self, status: str | None = None) -> Callable[[Any], bool] | None:
        """``may_take`` for ``status``, or None when it would check nothing (decoding twice
        would only cost)."""
        if not self.inputs and status is None:
            return None
        return lambda doc: self.may_take(doc, status)

    def may_take(self, doc: Any, status: str | None = None) -> bool:
        """False only when the stored document (a view or a summary as JSON, decoded by
        orjson) cannot match: its status or an input differs. Building the summary of a view
        costs about 7 times the decoding, and a rare filter rejects most of what it reads; the
        rows kept are checked again in full (``takes_row``)."""
        if not isinstance(doc, dict):
            return True  # not a shape known here: the full check decides
        if status is not None and doc.get("status", status) != status:
            return False
        inputs = doc.get("inputs")
        if not self.inputs or not isinstance(inputs, dict):
            return True
        for key, text in self.inputs.items():
            if key not in inputs or input_text(inputs[key]) != text:
                return False
        return True


async def from_recent(
    store: _Summaries,
    newest: Recent,
    where: ListFilter,
    *,
    name: str | None,
    limit: int,
    status: str | None = None,
) -> list[WorkflowSummary] | None:
    """The ``limit`` newest rows matching ``where`` from a recent list (of every status: "all"
    or one name's; or of the ended ``status``: "s.<status>" or its name's), or None when the
    list cannot tell (it dropped older members and holds fewer matches than wanted: the index
    can).

    A recent list holds exactly the newest members by start, newest first, so the first
    ``limit`` matches in it are the newest matches of all; when it was never truncated, or
    ``since`` stopped the walk inside it, what it holds is every match there is. A status's
    list keeps a member an operator's retry took out of the status: ``status`` drops it (every
    workflow in the status joined the list, so none is missed).
    """
    picked: list[WorkflowSummary] = []
    entries = newest.entries
    complete = not newest.truncated
    if where.since is not None:
        older = next(
            (i for i, (started, _) in enumerate(entries) if started < where.since_us), None
        )
        if older is not None:
            entries, complete = entries[:older], True
    entries = [entry for entry in entries if where.takes_start(entry[0])]
    for at in range(0, len(entries), _CHUNK):
        chunk = entries[at : at + _CHUNK]
        stored = await store.summaries([wf for _, wf in chunk], keep=where.precheck(status))
        for _, wf in chunk:
            found = stored.get(wf)
            if found is None:
                continue  # deleted, not written yet, or cannot match
            row = found.summary
            if status is not None and row.status != status:
                continue
            if (name is None or row.name == name) and where.takes_row(row):
                picked.append(row)
                if len(picked) == limit:
                    return picked
    return picked if complete else None
