"""Steps that need no worker, decided by the workflow actor itself; and the workflow's outputs.

- ``set: {NAME: "${{ expr }}"}``: when the job is ready its outputs are rendered from its
  expressions (``needs``, ``inputs``, ``env`` as for any job) and recorded as its
  ``JobSucceeded`` at once; an expression that cannot be evaluated fails it, naming the output.
- ``sleep: 10m`` / ``until: <time>``: when ready the job records ``JobSleepStarted`` (it reads
  as queued, claimable by no worker); the engine arms a durable timer (``SleepTimer``) and, when
  it fires, ``wake`` decides the job succeeded. The timer lives in the stream, so a sleep ends
  on time even across restarts of the engine; a cancel withdraws the sleeping job as any queued
  one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from actors.definitions import ExpressionContext, render
from actors.job_state import JobState
from events.catalog import JobEvent, JobFailed, JobSleepStarted, JobStatus, JobSucceeded
from events.definition import JobDefinition

__all__ = ["carry_out", "is_inline", "wake"]

# An in-process timer runs on the loop's clock, which may be a hair ahead of the wall clock.
_TIMER_TOLERANCE = timedelta(seconds=1)


def is_inline(spec: JobDefinition) -> bool:
    return spec.set_ is not None or spec.sleep is not None or spec.until is not None


def carry_out(
    current: JobState, spec: JobDefinition, context: ExpressionContext, now: datetime
) -> list[JobEvent] | None:
    """The events of a ready inline job; None for a job a worker runs."""
    if spec.set_ is not None:
        return [_set(current, spec.set_, context, now)]
    if spec.sleep is not None or spec.until is not None:
        until = _wake_time(spec, now)
        return [
            JobSleepStarted(**current.ids, attempt=current.attempt + 1, until=until, started_at=now)
        ]
    return None


def _set(
    current: JobState, templates: Mapping[str, str], context: ExpressionContext, now: datetime
) -> JobEvent:
    outputs: dict[str, str] = {}
    for name, template in templates.items():
        try:
            outputs[name] = render(template, context) if "${{" in template else template
        except ValueError as error:
            return JobFailed(
                **current.ids,
                attempt=0,
                epoch=current.epoch,
                error=f"set.{name}: cannot evaluate {template!r}: {error}",
                retryable=False,
                ended_at=now,
            )
    return JobSucceeded(
        **current.ids,
        attempt=current.attempt + 1,
        epoch=current.epoch,
        outputs=outputs,
        ended_at=now,
    )


def _wake_time(spec: JobDefinition, now: datetime) -> datetime:
    if spec.until is not None:
        until = spec.until if spec.until.tzinfo is not None else spec.until.replace(tzinfo=UTC)
        return max(until, now)
    return now + timedelta(seconds=spec.sleep or 0)


def wake(current: JobState, attempt: int, now: datetime) -> list[JobEvent]:
    """The sleep of ``attempt`` is over: the job succeeded. [] for a stale timer (the job was
    cancelled, reran, or its moment has not come)."""
    until = current.sleep_until
    if (
        current.status is not JobStatus.QUEUED
        or current.attempt != attempt
        or until is None
        or now < until - _TIMER_TOLERANCE
    ):
        return []
    return [
        JobSucceeded(
            **current.ids,
            attempt=attempt,
            epoch=current.epoch,
            outputs={"slept_until": until.isoformat()},
            ended_at=now,
        )
    ]
