"""n-of-m joins, pure: ``needs_at_least: {count: 2, of: [a, b, c]}``.

A job with a quorum does not wait for every job it names: it is decided once ``count`` of them
succeeded (it may run while the others still run), or once so many have ended otherwise that
``count`` can no longer be reached (it is then skipped, as for an unmet ``needs``). ``dag.judge``
asks ``settled`` before judging, and ``met``/``unmet_reason`` while judging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from events.catalog import JobStatus
from events.definition import JobDefinition


class Member(Protocol):
    @property
    def status(self) -> JobStatus: ...

    @property
    def succeeded(self) -> bool: ...


def settled(job: JobDefinition, upstream: Mapping[str, Member]) -> bool:
    """Whether ``job`` can be judged: every job it needs ended, and its quorum (if any) is
    reached or lost. Jobs named only in the quorum need not have ended."""
    at_least = job.needs_at_least
    if at_least is None:
        return all(up.status.is_terminal for up in upstream.values())
    only_quorum = set(at_least.of) - set(job.needs) - set(job.needs_any)
    if not all(up.status.is_terminal for name, up in upstream.items() if name not in only_quorum):
        return False
    succeeded, open_ = _count(job, upstream)
    return succeeded >= at_least.count or succeeded + open_ < at_least.count


def met(job: JobDefinition, upstream: Mapping[str, Member]) -> bool:
    """The quorum is reached (True for a job without one)."""
    if job.needs_at_least is None:
        return True
    return _count(job, upstream)[0] >= job.needs_at_least.count


def unmet_reason(job: JobDefinition, upstream: Mapping[str, Member]) -> str:
    assert job.needs_at_least is not None
    succeeded, _ = _count(job, upstream)
    of = ", ".join(job.needs_at_least.of)
    return f"needs {job.needs_at_least.count} of {of} to succeed; {succeeded} did"


def _count(job: JobDefinition, upstream: Mapping[str, Member]) -> tuple[int, int]:
    """(succeeded, not ended yet) among the quorum's jobs."""
    assert job.needs_at_least is not None
    succeeded = open_ = 0
    for name in job.needs_at_least.of:
        member = upstream[name]
        if member.succeeded:
            succeeded += 1
        elif not member.status.is_terminal:
            open_ += 1
    return succeeded, open_
