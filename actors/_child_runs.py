"""A ``workflow:`` job's child runs: their ids and the event that starts one (used by the job
actor for a retry, and by ``actors.subworkflows``; kept apart to avoid an import cycle)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from actors.job_state import JobState
from events.catalog import JobSpec, SubWorkflowStarted


def child_id(parent_id: str, job: str, attempt: int) -> str:
    """The child run of ``attempt`` of the parent's ``job``: derived, never random, so that a
    decision taken again (after a conflict or a takeover) starts the same child, once."""
    digest = hashlib.sha256(f"{parent_id}\x00{job}\x00{attempt}".encode()).hexdigest()[:20]
    return f"sub-{job[:60]}-{attempt}-{digest}"


def started(
    state: JobState, attempt: int, now: datetime, spec: JobSpec | None = None
) -> SubWorkflowStarted:
    """Attempt ``attempt`` of ``state``'s job runs as a new child workflow."""
    return SubWorkflowStarted(
        **state.ids,
        attempt=attempt,
        child_id=child_id(state.workflow_id, state.job, attempt),
        spec=spec or state.spec,
        retry=state.retry,
        on_failure=state.on_failure,
        attempt_base=state.attempt_base,
        started_at=now,
    )
