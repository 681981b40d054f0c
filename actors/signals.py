"""Waiting for the outside world: signals (``wait_for: {signal: NAME, timeout: 24h}``), pure.

A job with ``wait_for`` runs on no worker. When ``Advance`` finds it ready it decides
``JobWaiting`` (status ``waiting``) instead of ``JobQueued``. A signal sent to the workflow is
recorded as ``SignalReceived`` whatever its jobs are doing, so one sent before its wait starts is
kept, never lost; ``resolve`` (the engine runs it with every ``Advance``) pairs each waiting job
with the oldest signal of its name that no job took yet: ``SignalConsumed``, then the job's
``JobSucceeded`` with the signal's data as outputs. The wait's timeout is a durable timer
(``actors.engine.waits``): when it fires on a job still waiting, the job fails (``timed_out``) and
its ``on_failure`` applies as for any failure. A waiting job is cancelled as a queued one is
(nothing runs it to stop).

A signal is refused (``CommandRefused``: the sender sees why, nothing is recorded) when the
workflow has ended or is being cancelled, or when no job of it waits for that name. A name may
be a template (``approve-${{ item }}``: each instance of a fan-out waits for its own), rendered
when the wait starts; a signal whose name the template could give is kept until then.

A job may wait for a webhook instead (``wait_for: {webhook: {match: {...}}}``): its ``match`` is
rendered when the wait starts and kept in ``JobWaiting``; a request to the job's hook URL (the
gateway verifies its token, ``events.hooks``) whose JSON body matches succeeds it with the body
as outputs (``decide_hook``); one that does not match is refused with why (``match_problems``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from actors._state import updated
from actors.commands import HookWorkflow, SignalWorkflow
from actors.definitions import ExpressionContext, format_duration, render
from actors.fanout_state import job_names, parent_of
from actors.job import JobState
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import (
    JobFailed,
    JobStatus,
    JobSucceeded,
    JobWaiting,
    SignalConsumed,
    SignalReceived,
)
from events.definition import JobDefinition, WorkflowDefinition
from events.errors import CommandRefused
from events.subjects import is_valid_token

__all__ = [
    "decide_hook",
    "decide_signal",
    "evolve",
    "match_problems",
    "outputs_of",
    "resolve",
    "time_out",
    "waited_signals",
    "waiting",
]

# An in-process timer runs on the loop's clock, which may be a hair ahead of the wall clock.
_TIMER_TOLERANCE = timedelta(seconds=1)


def waiting(
    current: JobState, spec: JobDefinition, context: ExpressionContext, now: datetime
) -> JobWaiting:
    """The start of ``spec``'s wait (its ``wait_for`` is set): the next attempt, on no worker.
    Raises ``ValueError`` when a webhook's ``match`` or the signal's name (a template, e.g.
    ``approve-${{ item }}``) cannot be rendered, or the name renders to no valid name."""
    wait = spec.wait_for
    assert wait is not None
    match = None
    if wait.webhook is not None:
        match = {
            key: render(value, context) if isinstance(value, str) and "${{" in value else value
            for key, value in wait.webhook.match.items()
        }
    timeout = wait.timeout
    return JobWaiting(
        **current.ids,
        attempt=current.attempt + 1,
        signal=_signal_name(wait.signal, context),
        match=match,
        deadline=now + timedelta(seconds=timeout) if timeout is not None else None,
        on_failure=spec.on_failure,
        at=now,
    )


def _signal_name(name: str | None, context: ExpressionContext) -> str | None:
    if name is None or "${{" not in name:
        return name
    rendered = render(name, context)
    if not is_valid_token(rendered):
        raise ValueError(
            f"the signal name renders to {rendered[:80]!r}: use 1-128 letters, digits, _ or -"
        )
    return rendered


def _accepts(waited: str, name: str) -> bool:
    """Whether a job waiting for ``waited`` (a name, or a template: any text in place of each
    ``${{ }}``) may be waiting for ``name``; a signal sent before its wait starts is kept."""
    if "${{" not in waited:
        return waited == name
    parts = re.split(r"\$\{\{.*?\}\}", waited, flags=re.DOTALL)
    return re.fullmatch(".+?".join(re.escape(part) for part in parts), name) is not None


def waited_signals(definition: WorkflowDefinition) -> dict[str, str]:
    """Job -> the signal it waits for, for every job of ``definition`` with ``wait_for``."""
    return {
        name: spec.wait_for.signal
        for name, spec in definition.jobs.items()
        if spec.wait_for is not None and spec.wait_for.signal is not None
    }


def decide_signal(state: WorkflowState, cmd: SignalWorkflow) -> list[Event]:
    """``SignalReceived``, or [] when ``signal_id`` was recorded already (a retried send).

    The state must be a started workflow (``actors.control.decide`` checks that first)."""
    assert state.status is not None and state.definition is not None
    if cmd.signal_id is not None and cmd.signal_id in state.signal_ids:
        return []
    if state.status.is_terminal:
        raise _refused(state, f"it has ended ({state.status})")
    if state.cancel_requested:
        raise _refused(state, "it is being cancelled")
    names = sorted(set(waited_signals(state.definition).values()))
    if not any(_accepts(waited, cmd.name) for waited in names):
        waits = f"its jobs wait for: {', '.join(names)}" if names else "no job of it waits"
        raise _refused(state, f"no job of it waits for signal {cmd.name!r} ({waits})")
    return [
        SignalReceived(
            workflow_id=state.workflow_id,
            name=cmd.name,
            signal_id=cmd.signal_id or _numbered(state),
            data=dict(cmd.data),
            by=cmd.by,
            at=cmd.now,
        )
    ]


def _refused(state: WorkflowState, reason: str, what: str = "signal") -> CommandRefused:
    return CommandRefused(state.workflow_id, what, reason)


def _numbered(state: WorkflowState) -> str:
    """An id for a signal sent without one: the next number not taken."""
    n = len(state.signal_ids) + 1
    while f"signal-{n}" in state.signal_ids:
        n += 1
    return f"signal-{n}"


def resolve(state: WorkflowState, now: datetime) -> list[Event]:
    """Each waiting job takes the oldest signal of its name that no job took yet."""
    if not state.signals or state.status is None or state.status.is_terminal:
        return []
    pending = list(state.signals)
    decided: list[Event] = []
    for name in job_names(state.order, state.fanouts):  # (a fan-out's instances wait too)
        current = state.job(name)
        if current.status is not JobStatus.WAITING or current.wait is None:
            continue
        signal = next((s for s in pending if s.name == current.wait.signal), None)
        if signal is None:
            continue
        pending.remove(signal)
        decided += [
            SignalConsumed(
                workflow_id=state.workflow_id,
                name=signal.name,
                signal_id=signal.signal_id,
                consumer=name,
                at=now,
            ),
            JobSucceeded(
                **current.ids,
                attempt=current.attempt,
                epoch=current.epoch,
                outputs=outputs_of(signal.data),
                result=signal.data,
                ended_at=now,
            ),
        ]
    return decided


def outputs_of(data: Mapping[str, Any]) -> dict[str, str]:
    """A signal's JSON object as job outputs (text): text stays as it is, anything else is its
    JSON (``true``, ``3``, ``{"a": 1}``), so ``${{ needs.x.outputs.k }}`` reads it."""
    return {
        str(key): value if isinstance(value, str) else orjson.dumps(value).decode()
        for key, value in data.items()
    }


def time_out(state: WorkflowState, job: str, attempt: int, now: datetime) -> list[Event]:
    """The wait of ``job``'s ``attempt`` timed out: it fails, if it still waits (else a stale
    timer: the signal came, the job was cancelled, or a later attempt waits)."""
    current = state.job(job)
    wait = current.wait
    if current.status is not JobStatus.WAITING or current.attempt != attempt or wait is None:
        return []
    if wait.deadline is None or now < wait.deadline - _TIMER_TOLERANCE:
        return []
    waited = format_duration((wait.deadline - wait.at).total_seconds())
    what = f"signal {wait.signal!r}" if wait.signal is not None else "matching webhook request"
    return [
        JobFailed(
            **current.ids,
            attempt=current.attempt,
            epoch=current.epoch,
            error=f"no {what} arrived within {waited} (wait_for timeout)",
            retryable=False,
            timed_out=True,
            ended_at=now,
        )
    ]


def decide_hook(state: WorkflowState, cmd: HookWorkflow) -> list[Event]:
    """The job's ``JobSucceeded`` with the body as outputs, [] for the same body again (a
    redelivered request); refused when the wait is over or the body does not match."""
    assert state.status is not None
    if cmd.job not in state.order and parent_of(state.fanouts, cmd.job) is None:
        raise _refused(state, f"it has no job {cmd.job!r}", "hook")
    current = state.job(cmd.job)
    wait = current.wait
    if (
        current.status is JobStatus.SUCCEEDED
        and current.attempt == cmd.attempt
        and dict(current.outputs) == outputs_of(cmd.body)
    ):
        return []  # the same body again (a redelivered request)
    if state.status.is_terminal:
        raise _refused(state, f"it has ended ({state.status})", "hook")
    if current.status is not JobStatus.WAITING or current.attempt != cmd.attempt:
        why = f"job {cmd.job!r} no longer waits for this hook (it is {current.status})"
        raise _refused(state, why, "hook")
    if wait is None or wait.match is None:
        raise _refused(state, f"job {cmd.job!r} waits for a signal, not a webhook", "hook")
    problems = match_problems(wait.match, cmd.body)
    if problems:
        raise _refused(state, "the body does not match: " + "; ".join(problems), "hook")
    return [
        JobSucceeded(
            **current.ids,
            attempt=current.attempt,
            epoch=current.epoch,
            outputs=outputs_of(cmd.body),
            result=cmd.body,
            ended_at=cmd.now,
        )
    ]


def match_problems(match: Mapping[str, Any], body: Mapping[str, Any]) -> list[str]:
    """Why ``body`` does not match (every key of ``match`` equal); [] when it does. A text
    expected value (a rendered template is text) also matches a number or boolean that reads
    the same (``"42"`` matches ``42``)."""
    problems = []
    for key, want in match.items():
        if key not in body:
            problems.append(f"{key} is missing (expected {_json(want)})")
        elif not _equal(want, body[key]):
            problems.append(f"{key} is {_json(body[key])}, expected {_json(want)}")
    return problems


def _equal(want: Any, got: Any) -> bool:
    if want == got and type(want) is type(got):
        return True
    if isinstance(want, str) and isinstance(got, int | float | bool):
        return want == orjson.dumps(got).decode()
    return bool(want == got) and not isinstance(want, bool) and not isinstance(got, bool)


def _json(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def evolve(state: WorkflowState, event: SignalReceived | SignalConsumed) -> WorkflowState:
    """The workflow state after a signal event: signals kept until consumed, ids seen."""
    if isinstance(event, SignalReceived):
        return updated(
            state,
            signals=(*state.signals, event),
            signal_ids=state.signal_ids | {event.signal_id},
        )
    kept = tuple(s for s in state.signals if s.signal_id != event.signal_id)
    return updated(state, signals=kept)
