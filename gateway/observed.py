"""HTTP workers' attempts, observed by the gateway as a worker observes its own: the same
Prometheus counters and histograms (``jetwork_attempts_*`` by handler and outcome, dispatch
latency) and, when tracing is on, the same ``dispatch wait`` and ``job`` spans, children of the
workflow's span. The gateway is where an HTTP worker's claims and results pass, so it emits the
worker lifecycle events (``sdk/worker/lifecycle.py``) for them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from events.catalog import JobEvent, JobResultRejected, JobRetryScheduled
from events.labels import HANDLER_PREFIX, parse_token
from gateway.lease_ids import LeaseId
from sdk.worker.lifecycle import AttemptRef, JobEnded, Listeners
from sdk.worker.metered import attach_metrics
from sdk.worker.traced import attach_tracing
from telemetry import tracing


def observed_gateway() -> Listeners:
    """The gateway's listeners: metrics always, spans when an OTLP endpoint is set."""
    listeners = Listeners()
    attach_metrics(listeners)
    if tracing.configure_from_env("jetwork-gateway"):
        attach_tracing(listeners)
    return listeners


def attempt_ref(lease: LeaseId) -> AttemptRef:
    """The attempt a lease holds, as lifecycle listeners see it (``shell`` for a job routed by
    labels, its handler for a ``uses:`` job, as on a Python or shell worker)."""
    handlers = [r[1:] for r in parse_token(lease.labelset) if r.startswith(HANDLER_PREFIX)]
    return AttemptRef(
        workflow_id=lease.workflow_id,
        job=lease.job,
        attempt=lease.attempt,
        epoch=lease.epoch,
        handler=handlers[0] if handlers else "shell",
        worker_id=lease.worker_id,
        traceparent=lease.traceparent,
    )


Outcome = Literal["succeeded", "failed", "cancelled"]


def ended(
    lease: LeaseId, outcome: Outcome, recorded: Sequence[JobEvent], error: str | None = None
) -> JobEnded:
    """What listeners hear of an HTTP worker's result once ``recorded``."""
    duration = max(0.0, time.time() - lease.granted_at_ms / 1000)
    if any(isinstance(event, JobResultRejected) for event in recorded):
        return JobEnded(attempt_ref(lease), "rejected", duration=duration)
    retried = any(isinstance(event, JobRetryScheduled) for event in recorded)
    return JobEnded(attempt_ref(lease), outcome, duration=duration, error=error,
                    retried=retried, at=time.time())  # fmt: skip
