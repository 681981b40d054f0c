"""Deleting an ended workflow, pure: whether it may be deleted, and its tombstone.

Deletion (``jetwork delete``, the server's retention) appends a ``WorkflowDeleted`` tombstone to
the workflow actor, conditional on the actor's last sequence, and only then purges what came
before it (``sdk.deletion``). The condition is what keeps an open workflow's history safe: an
operator's retry or rerun that reopens the workflow between the check and the append moves the
actor's sequence, the append conflicts, and the deletion is refused on the state it then reads.
See docs/reliability.md, "Deleting workflows".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from actors.workflow_state import WorkflowState
from events.catalog import WorkflowDeleted
from events.errors import CommandRefused, WorkflowNotFound

__all__ = ["decide", "expired"]


def decide(state: WorkflowState, *, by: str, reason: str | None, at: datetime) -> WorkflowDeleted:
    """The tombstone of the ended workflow ``state``.

    Raises ``WorkflowNotFound`` for a workflow never started (or deleted already) and
    ``CommandRefused`` for one that has not ended: its history is never touched.
    """
    if state.status is None or state.definition is None:
        raise WorkflowNotFound(state.workflow_id)
    if not state.status.is_terminal:
        raise CommandRefused(
            state.workflow_id,
            "delete",
            f"it is {state.status.value}",
            message=(
                f"cannot delete workflow {state.workflow_id!r}: it is {state.status.value}; "
                f"only an ended workflow can be deleted (cancel it first: "
                f"jetwork cancel {state.workflow_id})"
            ),
        )
    return WorkflowDeleted(
        workflow_id=state.workflow_id,
        by=by,
        reason=reason,
        name=state.definition.name,
        status=state.status.value,
        ended_at=state.ended_at,
        at=at,
        namespace=state.namespace,
    )


def expired(ended_at: datetime | None, *, now: datetime, retention: timedelta) -> bool:
    """Whether a workflow that ended at ``ended_at`` is older than ``retention`` (None: open)."""
    return ended_at is not None and now - ended_at > retention
