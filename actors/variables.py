"""Workflow variables, pure: ``jetwork set ID KEY=VALUE…`` (Conductor's update variables).

A workflow starts with the ``vars:`` of its definition; an operator's ``SetVariables`` replaces
the values of the keys it names (and may add keys the definition did not declare). Jobs read them
as ``${{ vars.KEY }}`` when they are judged and rendered, so a change reaches every job not yet
queued; a job queued already keeps what it was rendered with. A variable never set reads as
``null`` (``''`` in a template), as any missing property does.

Refused on an ended workflow (nothing is left to read them) and for a name that cannot be read in
an expression. Setting values that hold already changes nothing.
"""

from __future__ import annotations

from actors._state import updated
from actors.commands import SetVariables
from actors.definitions.variable_names import NAME_PATTERN, name_problem
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import WorkflowVariablesSet
from events.errors import CommandRefused

__all__ = ["NAME_PATTERN", "decide", "evolve", "name_problem"]


def decide(state: WorkflowState, cmd: SetVariables) -> list[Event]:
    """``WorkflowVariablesSet`` with the values that change; [] when all hold already."""
    assert state.status is not None
    if not cmd.values:
        raise _refuse(state, "no variable given (KEY=VALUE)")
    problems = [problem for name in cmd.values if (problem := name_problem(name)) is not None]
    if problems:
        raise _refuse(state, "; ".join(problems))
    if state.status.is_terminal:
        raise _refuse(
            state, f"it has ended ({state.status}); variables reach only jobs not yet queued"
        )
    changed = {
        name: value
        for name, value in cmd.values.items()
        if name not in state.vars or state.vars[name] != value
    }
    if not changed:
        return []
    return [
        WorkflowVariablesSet(
            workflow_id=state.workflow_id,
            by=cmd.by,
            reason=cmd.reason,
            request_id=cmd.request_id,
            values=changed,
            at=cmd.now,
        )
    ]


def evolve(state: WorkflowState, event: WorkflowVariablesSet) -> WorkflowState:
    return updated(state, vars={**state.vars, **event.values}, last_request_id=event.request_id)


def _refuse(state: WorkflowState, reason: str) -> CommandRefused:
    return CommandRefused(state.workflow_id, "set", reason)
