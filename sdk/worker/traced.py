"""The worker's spans (``telemetry/tracing.py``), kept as one more lifecycle listener: for each
attempt a ``dispatch wait`` span (claimable to claimed) and a ``job`` span (claimed to its result
recorded), children of the workflow's span. Attached only when tracing is on."""

from __future__ import annotations

import time

from sdk.worker.lifecycle import ENDED, AttemptRef, JobEnded, JobStarted, Listeners
from telemetry import tracing


def attach_tracing(listeners: Listeners) -> None:
    claimed: dict[AttemptRef, float] = {}

    def started(event: JobStarted) -> None:
        now = time.time()
        claimed[event.ref] = now
        tracing.record_span(
            event.ref.workflow_id,
            f"dispatch wait {event.ref.job}",
            started=now - max(0.0, event.waited),
            ended=now,
            attributes=_attributes(event.ref) | {"jetwork.took_over": event.took_over},
            traceparent=event.ref.traceparent,
        )

    def ended(event: JobEnded) -> None:
        now = event.at or time.time()  # the result's own time: before the engine saw it
        since = claimed.pop(event.ref, None)
        if since is None:  # the claim was heard before tracing was on
            since = now - (event.duration or 0.0)
        failed = event.outcome not in ("succeeded", "parked")
        tracing.record_span(
            event.ref.workflow_id,
            f"job {event.ref.job}",
            started=since,
            ended=now,
            attributes=_attributes(event.ref) | {"jetwork.outcome": event.outcome},
            error=(event.error or event.outcome) if failed else None,
            traceparent=event.ref.traceparent,
        )

    listeners.on("job_started", started)
    for kind in ENDED:
        listeners.on(kind, ended)


def _attributes(ref: AttemptRef) -> dict[str, str | int | bool]:
    return {
        "jetwork.workflow_id": ref.workflow_id,
        "jetwork.job": ref.job,
        "jetwork.attempt": ref.attempt,
        "jetwork.epoch": ref.epoch,
        "jetwork.handler": ref.handler,
        "jetwork.worker_id": ref.worker_id,
    }
