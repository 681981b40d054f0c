"""Reading claims back from a history in tests: a short run records its claim inside its result
(``WorkerConfig.claim_window``), so a claim is a ``JobStarted`` or what a result carries."""

from __future__ import annotations

from collections.abc import Iterable

from events.base import RecordedEvent
from events.catalog import JobFailed, JobStarted, JobSucceeded, implied_start


def claim_records(
    history: Iterable[RecordedEvent], job: str | None = None
) -> list[tuple[int, JobStarted]]:
    """Each claim of ``history`` (of ``job``) with the sequence of the event that holds it."""
    found: list[tuple[int, JobStarted]] = []
    for record in history:
        event = record.event
        if isinstance(event, JobSucceeded | JobFailed):
            implied = implied_start(event)
            event = implied if implied is not None else event
        if isinstance(event, JobStarted) and (job is None or event.job == job):
            found.append((record.seq, event))
    return found


def claims(history: Iterable[RecordedEvent], job: str | None = None) -> list[JobStarted]:
    """Every claim of ``history`` (of ``job``), appended alone or carried by a result."""
    return [claim for _, claim in claim_records(history, job)]
