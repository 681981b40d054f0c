"""Workflow concurrency groups, the workflow actor's side: queued, admitted, superseded. Pure.

A definition's top-level ``concurrency: {group, limit, cancel_in_progress}`` lets at most
``limit`` runs of the group run at once across every engine. Each run's part is recorded in
its own log:

- ``Advance`` on a run that holds no slot records ``WorkflowQueued{group, limit, run}`` first
  (the group rendered from the inputs and variables): status ``queued``, no job is queued.
- The engine then enters the run into the group's queue (``actors.group_queue``, kept in KV by
  ``actors/engine/groups.py``). A run given a slot is sent ``admit`` (``AdmitRequest``), and
  ``AdmitWorkflow`` records ``WorkflowAdmitted``: status ``running``, its jobs go on.
- Its end (succeeded, failed, cancelled, timed out) gives the slot back (``calls``: ``Leave``).
  A durable timer looks again every ``RECHECK`` while it waits (``GroupTimer``): a grant whose
  ``admit`` was never sent (its engine died), or a holder that ended without giving its slot back,
  costs at most that long.
- With ``cancel_in_progress`` a newcomer has the group's older members cancelled (a plain cancel
  request whose reason names it; ``superseded_reason``).

A cancel while queued ends the run at once (no job ran); a timeout counts from the start, queue
time included; an operator's retry or rerun queues the run again (``run`` + 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from actors._state import updated
from actors.commands import AdmitWorkflow
from actors.definitions.expressions import ExpressionContext, ExpressionError
from actors.definitions.templating import render
from actors.workflow_state import WorkflowState
from events import subjects
from events.base import Event
from events.catalog import (
    WorkflowAdmitted,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowQueued,
    WorkflowStatus,
    WorkflowSucceeded,
)

# How often a queued run looks at its group again (the fallback: grants are sent at once).
RECHECK: Final = 10.0
_ENDINGS = (WorkflowSucceeded, WorkflowFailed, WorkflowCancelled)


@dataclass(frozen=True, slots=True)
class Enter:
    """Enter run ``run`` of ``workflow_id`` into ``group`` (or look whether it holds a slot)."""

    workflow_id: str
    run: int
    group: str
    limit: int
    cancel_in_progress: bool


@dataclass(frozen=True, slots=True)
class Leave:
    """Run ``run`` of ``workflow_id`` (and any earlier one) leaves ``group``: it ended."""

    workflow_id: str
    run: int
    group: str


GroupCall = Enter | Leave


def key(group: str) -> str:
    """The group's key in KV ``jw_concurrency`` (job groups use the bare name: no dot in it)."""
    return f"wf.{group}"


def gate(state: WorkflowState, now: datetime) -> list[Event] | None:
    """What ``Advance`` decides for a run without a slot; None when it holds one (or needs none).

    Only a started, open workflow is asked (``Advance`` handles the ended ones)."""
    definition = state.definition
    if definition is None or definition.concurrency is None:
        return None
    wf = state.workflow_id
    if state.admitted_run == state.retries and state.status is not WorkflowStatus.QUEUED:
        return None
    # Queued, or paused before it could queue (a pause in the start's batch): it queues at the
    # resume. Either way no job ran, so a cancel ends it at once.
    if state.status in (WorkflowStatus.QUEUED, WorkflowStatus.PAUSED):
        if state.cancel_reason is not None:
            return [WorkflowCancelled(workflow_id=wf, reason=state.cancel_reason, ended_at=now)]
        return []
    concurrency = definition.concurrency
    try:
        group = render_group(concurrency.group, state)
    except ValueError as error:
        reason = f"cannot render the concurrency group: {error}"
        return [WorkflowFailed(workflow_id=wf, reason=reason, ended_at=now)]
    queued = WorkflowQueued(
        workflow_id=wf,
        group=group,
        limit=concurrency.limit,
        cancel_in_progress=concurrency.cancel_in_progress,
        run=state.retries,
        at=now,
    )
    return [queued]


def render_group(template: str, state: WorkflowState) -> str:
    """The group's name for this run; ``ValueError`` when it is not a token (it keys the group's
    queue and subjects: letters, digits, ``_`` and ``-``)."""
    if "${{" not in template:
        return template
    assert state.definition is not None
    context = ExpressionContext(
        needs={}, inputs=state.inputs, env=dict(state.definition.env), vars=state.vars
    )
    try:
        name = render(template, context)
    except ExpressionError as error:
        raise ValueError(str(error)) from error
    if not subjects.is_valid_token(name):
        raise ValueError(f"it renders to {name[:80]!r}: use letters, digits, _ and -")
    return name


def admit(state: WorkflowState, command: AdmitWorkflow) -> list[Event]:
    """``WorkflowAdmitted`` when the run it names is queued; else nothing (a grant sent twice,
    for an earlier run, or to a run that ended meanwhile: ``calls`` gives that slot back)."""
    if state.status is not WorkflowStatus.QUEUED or state.queued_run != command.run:
        return []
    assert state.group is not None  # set with the status
    return [
        WorkflowAdmitted(
            workflow_id=state.workflow_id, group=state.group, run=command.run, at=command.now
        )
    ]


def evolve(state: WorkflowState, event: WorkflowQueued | WorkflowAdmitted) -> WorkflowState:
    match event:
        case WorkflowQueued():
            return updated(
                state,
                status=WorkflowStatus.QUEUED,
                group=event.group,
                group_limit=event.limit,
                queued_run=event.run,
            )
        case WorkflowAdmitted():
            return updated(state, status=WorkflowStatus.RUNNING, admitted_run=event.run)


def calls(state: WorkflowState, decided: Sequence[Event], *, look: bool) -> list[GroupCall]:
    """What the engine must do in the group's queue after a reaction: enter a run that was
    queued (or look again, ``look``: its timer fired, a grant came); give the slot of a run that
    ended back (again when ``look`` finds it ended: a lost give-back, or a grant too late)."""
    definition = state.definition
    if state.group is None or state.status is None or definition is None:
        return []
    if any(isinstance(event, _ENDINGS) for event in decided) or (look and state.status.is_terminal):
        return [Leave(state.workflow_id, state.queued_run, state.group)]
    queued = any(isinstance(event, WorkflowQueued) for event in decided)
    if state.status is WorkflowStatus.QUEUED and (queued or look):
        concurrency = definition.concurrency
        assert concurrency is not None  # a group is set only from it
        return [
            Enter(
                state.workflow_id,
                state.queued_run,
                state.group,
                concurrency.limit,
                concurrency.cancel_in_progress,
            )
        ]
    return []


def superseded_reason(newcomer: str, group: str) -> str:
    """Why an older member of a ``cancel_in_progress`` group is cancelled (its history says)."""
    return f"superseded by {newcomer} in concurrency group {group} (cancel_in_progress)"


def queue_note(state: WorkflowState) -> str | None:
    """What a queued run waits for, as views show it."""
    if state.status is not WorkflowStatus.QUEUED or state.group is None:
        return None
    return f"waiting for concurrency group {state.group} (limit {state.group_limit})"
