"""The worker's own observers of its attempts: Prometheus metrics always, spans when tracing is on
(``telemetry/tracing.py``), each one more lifecycle listener (``lifecycle.py``)."""

from __future__ import annotations

from sdk.worker.lifecycle import ENDED, JobEnded, JobStarted, Listeners, PollFailed
from sdk.worker.traced import attach_tracing
from telemetry import metrics, tracing


def observed() -> Listeners:
    """A worker's listeners, with its metrics and, when an OTLP endpoint is set, its spans."""
    listeners = Listeners()
    attach_metrics(listeners)
    if tracing.configure_from_env("jetwork-worker"):
        attach_tracing(listeners)
    return listeners


def attach_metrics(listeners: Listeners) -> None:
    listeners.on("job_started", _started)
    for kind in ENDED:
        listeners.on(kind, _ended)
    listeners.on("poll_failed", _poll_failed)


def _started(event: JobStarted) -> None:
    metrics.attempt_claimed(event.ref.handler, event.waited, took_over=event.took_over)


def _ended(event: JobEnded) -> None:
    metrics.attempt_ended(
        event.ref.handler, event.outcome, seconds=event.duration, retried=event.retried
    )


def _poll_failed(event: PollFailed) -> None:
    metrics.POLL_ERRORS.labels(event.labelset).inc()
