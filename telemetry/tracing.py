"""OpenTelemetry traces: one trace per workflow run, exported with OTLP when asked for.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and
the ``otel`` extra is installed (``pip install 'jetwork[otel]'``); off otherwise, and then free:
nothing is imported, every ``record_*`` returns at its first line. The exporter is the SDK's
OTLP/HTTP one, configured by the standard ``OTEL_*`` variables; ``OTEL_SERVICE_NAME`` overrides
the process's service name (``jetwork-server``, ``jetwork-worker``).

**Ids come from the workflow id.** The trace id is the first 16 bytes of
``sha256("jetwork:" + workflow_id)``, the workflow span's id the next 8. Every process derives
them alike, so the workflow span (recorded by the engine that decides the end) and each attempt's
spans (recorded by the worker that ran it, in any process, at any time) form one trace, with the
workflow span as the parent of the others, and nothing has to travel with the events for it.
**A caller's trace is joined.** A run started with a W3C ``traceparent`` (``Client.start`` takes
the caller's current OpenTelemetry span, or ``traceparent=``; ``jetwork run --traceparent`` /
``TRACEPARENT``; the ``traceparent`` header of ``POST /api/workflows``) records it in
``WorkflowStarted`` and in every queued job's spec: the trace id is then the caller's, the
workflow span a child of the caller's span (its id still derived from the workflow id), and the
workers' spans children of the workflow span, in the caller's trace.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import random
from collections.abc import MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import structlog

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_log = structlog.get_logger("jetwork.telemetry")
_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_pinned: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "jetwork_pinned_ids", default=None
)


class _State:
    provider: TracerProvider | None = None
    tracer: Any = None


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def workflow_ids(workflow_id: str, traceparent: str | None = None) -> tuple[int, int]:
    """(trace id, workflow span id) of a workflow run, derived from its id; the trace id is the
    caller's when the run was started with a ``traceparent``."""
    digest = hashlib.sha256(f"jetwork:{workflow_id}".encode()).digest()
    caller = parse_traceparent(traceparent)
    trace_id = caller[0] if caller else int.from_bytes(digest[:16], "big") or 1
    return trace_id, int.from_bytes(digest[16:24], "big") or 1


def parse_traceparent(traceparent: str | None) -> tuple[int, int] | None:
    """(trace id, span id) of a W3C ``traceparent`` (version 00); None for none or an invalid one
    (all-zero ids are invalid). Start requests check the format already (events/requests.py)."""
    if traceparent is None:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace_id, span_id) if trace_id and span_id else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the caller's current OpenTelemetry span, if it has a valid one (the
    ``opentelemetry-api`` package may be absent: then None)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def trace_id_hex(workflow_id: str) -> str:
    """The trace id as OTLP backends show it (for logs)."""
    return f"{workflow_ids(workflow_id)[0]:032x}"


def add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: a log line about a workflow carries its run's ``trace_id`` (when
    tracing is on), so logs and traces meet in the backends."""
    if _state.tracer is not None:
        workflow_id = event.get("workflow_id") or event.get("workflow")
        if isinstance(workflow_id, str) and workflow_id.startswith("wf-"):
            event.setdefault("trace_id", trace_id_hex(workflow_id))
    return event


# --- set-up ------------------------------------------------------------------------------------


def configure_from_env(service_name: str) -> bool:
    """Turn tracing on if an OTLP endpoint is set (once per process); True when on."""
    if enabled():
        return True
    if not any(os.environ.get(name) for name in _ENDPOINTS):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        _log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
            "pip install 'jetwork[otel]'; traces are off"
        )
        return False
    use(OTLPSpanExporter(), service_name=os.environ.get("OTEL_SERVICE_NAME") or service_name)
    _log.info("tracing on", exporter="otlp/http", service=service_name)
    return True


def use(exporter: SpanExporter, *, service_name: str, batch: bool = True) -> None:
    """Export this process's spans to ``exporter`` (tests: the SDK's in-memory one)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), id_generator=_ids()
    )
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _state.provider, _state.tracer = provider, provider.get_tracer("jetwork")


def shutdown() -> None:
    """Export what is pending and stop (a process's exit)."""
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.provider = _state.tracer = None


def _ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class PinnedIds(IdGenerator):
        """Random ids, except the workflow span's, pinned to those derived from its id."""

        def generate_trace_id(self) -> int:
            pinned = _pinned.get()
            return pinned[0] if pinned else random.getrandbits(128)

        def generate_span_id(self) -> int:
            pinned = _pinned.get()
            return pinned[1] if pinned else random.getrandbits(64)

    return PinnedIds()


# --- spans -------------------------------------------------------------------------------------


def record_workflow(
    workflow_id: str,
    *,
    name: str,
    status: str,
    started: datetime,
    ended: datetime,
    retry: int = 0,
    traceparent: str | None = None,
) -> None:
    """The run's root span, once its end is in the log. An operator's retry (``jetwork retry``)
    ends the same run again: that part is a child of the root (one root per trace), from the
    retry to the new end."""
    if _state.tracer is None:
        return
    if retry:
        attributes = {"jetwork.workflow_id": workflow_id, "jetwork.workflow": name,
                      "jetwork.status": status, "jetwork.retry": retry}  # fmt: skip
        error = None if status == "succeeded" else status
        record_span(workflow_id, f"workflow {name} retry {retry}", started=started.timestamp(),
                    ended=ended.timestamp(), attributes=attributes, error=error,
                    traceparent=traceparent)  # fmt: skip
        return
    token = _pinned.set(workflow_ids(workflow_id, traceparent))
    try:
        span = _state.tracer.start_span(
            f"workflow {name}",
            context=_remote_parent(parse_traceparent(traceparent)),
            start_time=_nanos(started),
            attributes={
                "jetwork.workflow_id": workflow_id,
                "jetwork.workflow": name,
                "jetwork.status": status,
            },
        )
    finally:
        _pinned.reset(token)
    if status != "succeeded":
        _error(span, status)
    span.end(end_time=_nanos(ended))


def record_span(
    workflow_id: str,
    name: str,
    *,
    started: float,
    ended: float,
    attributes: dict[str, Any],
    error: str | None = None,
    traceparent: str | None = None,
) -> None:
    """A span of a workflow's trace, child of its workflow span (times: epoch seconds);
    ``traceparent``: the run's caller's, when it has one (``JobSpec.traceparent``)."""
    if _state.tracer is None:
        return
    span = _state.tracer.start_span(
        name,
        context=_remote_parent(workflow_ids(workflow_id, traceparent)),
        start_time=int(started * 1e9),
        attributes=attributes,
    )
    if error is not None:
        _error(span, error)
    span.end(end_time=int(ended * 1e9))


def _remote_parent(ids: tuple[int, int] | None) -> Any:
    """A context whose current span is the (remote, sampled) span ``ids``; None: a new root."""
    if ids is None:
        return None
    from opentelemetry import trace

    parent = trace.SpanContext(
        ids[0], ids[1], is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def _error(span: Any, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description[:500]))


def _nanos(when: datetime) -> int:
    return int(when.timestamp() * 1e9)
