"""What happens to a worker's job attempts, told to listeners: ``worker.on(kind, fn)``.

The model is Conductor's ``TaskRunnerEventsListener`` and Celery's signals: user code hears of
claims, results and failures without touching the hot path's logic. A listener gets one frozen
object describing what happened; it is called on the worker's event loop right after the fact (a
result: after it is recorded in the log). A plain function must be quick (it runs inline); a
coroutine function is started as a task and not awaited. A listener that raises is logged and
changes nothing: the job's result is already recorded. The worker's Prometheus metrics are one
such listener (``sdk/worker/metered.py``); ``@worker.job(..., on_success=fn, on_failure=fn)``
are listeners for one handler's jobs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, get_args

import structlog

from events.catalog import (
    JobCancelled,
    JobEvent,
    JobFailed,
    JobResultRejected,
    JobRetryScheduled,
    JobSucceeded,
)
from sdk.worker.executors.base import Cancelled, ExecutionResult, Failed, Parked, Succeeded

_log = structlog.get_logger("jetwork.worker")

Kind = Literal[
    "job_started",
    "job_succeeded",
    "job_failed",
    "job_cancelled",
    "job_rejected",
    "job_abandoned",
    "job_parked",
    "lease_lost",
    "poll_failed",
]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
ENDED: Final = (
    "job_succeeded",
    "job_failed",
    "job_cancelled",
    "job_rejected",
    "job_abandoned",
    "job_parked",
)


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """Which attempt: the job, its attempt number and the lease epoch this worker holds."""

    workflow_id: str
    job: str
    attempt: int
    epoch: int
    handler: str  # the job's ``uses:`` handler, or ``shell`` for a ``run:`` job
    worker_id: str
    # The run's caller trace context (``JobSpec.traceparent``): spans join the caller's trace.
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class JobStarted:
    """``job_started``: claimed ``waited`` seconds after it could be (queued, or retry delay
    over); ``took_over``: from a holder whose lease ran out."""

    ref: AttemptRef
    waited: float
    took_over: bool


@dataclass(frozen=True, slots=True)
class JobEnded:
    """``job_succeeded`` / ``job_failed`` / ``job_cancelled``: the result recorded in the log;
    ``job_rejected``: recorded as rejected (the lease was no longer current);
    ``job_abandoned``: not reported (the lease was lost, or the worker aborted);
    ``job_parked``: the handler returned ``InProgress`` (the job runs again later)."""

    ref: AttemptRef
    outcome: Literal["succeeded", "failed", "cancelled", "rejected", "abandoned", "parked"]
    duration: float | None  # seconds the attempt ran (None: abandoned)
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    retried: bool = False  # a failure whose retry policy queued another attempt
    at: float | None = None  # when the result was decided (epoch seconds; None: not recorded)


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """``lease_lost``: this worker no longer holds the attempt (taken over, cancelled …)."""

    ref: AttemptRef
    reason: str


@dataclass(frozen=True, slots=True)
class PollFailed:
    """``poll_failed``: a pull request for a label set's jobs failed (it is tried again)."""

    labelset: str
    error: str


Listener = Callable[[Any], Any]
_RESULTS: Final = (JobSucceeded, JobFailed, JobCancelled)


class Listeners:
    """The listeners of one worker, by kind."""

    def __init__(self) -> None:
        self._by_kind: dict[str, list[Listener]] = {}
        self._running: set[asyncio.Task[Any]] = set()

    def on(self, kind: str, listener: Listener) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown worker event {kind!r}: use one of {', '.join(KINDS)}")
        if not callable(listener):
            raise TypeError(f"the listener for {kind!r} must be callable, not {listener!r}")
        self._by_kind.setdefault(kind, []).append(listener)

    def emit(self, kind: Kind, event: object) -> None:
        for listener in self._by_kind.get(kind, ()):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._running.add(task)
                    task.add_done_callback(self._finished)
            except Exception:
                _log.exception(
                    "a worker event listener failed", kind=kind, listener=_name(listener)
                )

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("a worker event listener failed", exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for the coroutine listeners still running (the worker's shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def ended(
    ref: AttemptRef, result: ExecutionResult, recorded: Sequence[JobEvent], *, seconds: float
) -> JobEnded:
    """What listeners hear of a result once ``recorded`` (the events its report appended)."""
    at = next((_when(e).timestamp() for e in recorded if isinstance(e, _RESULTS)), None)
    if any(isinstance(event, JobResultRejected) for event in recorded):
        return JobEnded(ref, "rejected", duration=seconds, at=at)
    match result:
        case Succeeded(outputs=outputs):
            return JobEnded(ref, "succeeded", duration=seconds, outputs=dict(outputs), at=at)
        case Failed(error=error):
            retried = any(isinstance(event, JobRetryScheduled) for event in recorded)
            return JobEnded(ref, "failed", duration=seconds, error=error, retried=retried, at=at)
        case Cancelled(reason=reason):
            return JobEnded(ref, "cancelled", duration=seconds, error=reason, at=at)
        case Parked(outputs=outputs):  # a handler's InProgress: it runs again later
            return JobEnded(ref, "parked", duration=seconds, outputs=dict(outputs))
        case _:
            return JobEnded(ref, "abandoned", duration=None)


def _when(result: JobSucceeded | JobFailed | JobCancelled) -> datetime:
    return result.at if isinstance(result, JobCancelled) else result.ended_at


def for_handler(handler: str, listener: Listener) -> Listener:
    """``listener`` called for the attempts of ``handler`` only."""

    def filtered(event: Any) -> Any:
        if event.ref.handler == handler:
            return listener(event)
        return None

    return filtered


def _name(listener: Listener) -> str:
    return getattr(listener, "__qualname__", None) or repr(listener)
