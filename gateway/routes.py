"""Every operation of the gateway in one table: path, method, role, and what the OpenAPI
document says of it (``gateway.openapi`` is generated from this table)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from gateway import (
    client_api,
    control_api,
    deletion_api,
    hooks_api,
    inspect_api,
    metrics_api,
    registry_api,
    schedules_api,
    signals_api,
    streams,
    worker_api,
)
from gateway.auth import Role
from gateway.inspect_api import GraphOut, JobDetailOut, LabelSetsOut
from gateway.models import (
    CancelBody,
    ClaimBody,
    ClaimOut,
    CompleteBody,
    ControlBody,
    ControlOut,
    FailBody,
    HeartbeatOut,
    LogsBody,
    RegisterBody,
    RegisterDefinitionBody,
    RerunBody,
    SetVarsBody,
    SkipBody,
    StartBody,
    StartOut,
)

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str
    endpoint: Endpoint
    role: Role | None
    summary: str
    tag: str
    name: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: tuple[tuple[str, str], ...] = ()
    """(name, description) of query parameters."""
    stream: bool = False
    """Answers with server-sent events."""
    alias_of: str | None = None
    """The name of the operation this path is another name for (workflow-graph's paths)."""
    nullable: bool = False
    """The answer may be JSON ``null``."""
    text: str | None = None
    """The media type of an answer that is not JSON (Prometheus's text format)."""


W, C, A = Role.WORKER, Role.CLIENT, Role.ADMIN
_WF = "/api/workflows/{workflow_id}"
_SCHEDULE = "/api/schedules/{name}"
_LOGS_QUERY = (
    ("follow", "1: server-sent events, the lines so far then new ones until the job ends"),
)
_LIST_QUERY = (
    ("status", "running, paused, succeeded, failed or cancelled"),
    ("name", "the workflow's name"),
    ("limit", "rows per page, 1-1000 (default 50)"),
    ("cursor", "the `next` link of the page before"),
    ("since", "started at or after: a duration ago (2h, 7d) or an RFC 3339 time"),
    ("until", "started at or before: a duration ago (30m) or an RFC 3339 time"),
    ("input", "KEY=VALUE: started with this input (repeatable)"),
    ("label", "a job of it needs this label (repeatable: all of them)"),
    ("parent", "a sub-workflow of this workflow id"),
)
_EVENTS_QUERY = (
    ("workflow_id", "one workflow's events"),
    ("job", "one job's events"),
    ("type", "one event type, e.g. JobFailed"),
    ("from_start", "1: the matching events already in the log first"),
)

OPERATIONS: tuple[Op, ...] = (
    # --- the worker protocol (workflow-graph's) ---
    Op("POST", "/api/workers/register", worker_api.register, W, "Register an HTTP worker",
       "worker protocol", "register_worker", body=RegisterBody),
    Op("POST", "/api/jobs/claim", worker_api.claim, W,
       "Claim a job for these labels under a lease (JSON null: nothing to do)",
       "worker protocol", "claim_job", body=ClaimBody, response=ClaimOut, nullable=True),
    Op("POST", "/api/jobs/{lease_id}/heartbeat", worker_api.heartbeat, W,
       "Renew the lease (409 once it is lost)", "worker protocol", "heartbeat",
       response=HeartbeatOut),
    Op("POST", "/api/jobs/{lease_id}/logs", worker_api.logs, W, "Push log chunks of the job",
       "worker protocol", "push_logs", body=LogsBody),
    Op("POST", "/api/jobs/{lease_id}/complete", worker_api.complete, W,
       "Report success with outputs", "worker protocol", "complete_job", body=CompleteBody),
    Op("POST", "/api/jobs/{lease_id}/fail", worker_api.fail, W,
       "Report failure (retryable: false fails without retry)", "worker protocol", "fail_job",
       body=FailBody),
    Op("GET", "/api/jobs/{workflow_id}/{job}/cancelled", worker_api.cancelled, W,
       "Was the job asked to stop? (JSON true/false)", "worker protocol", "job_cancelled"),
    # --- the client API ---
    Op("POST", "/api/workflows", client_api.start, C,
       "Start a workflow (JSON body, or YAML with ?input=k=v&idempotency_key=)", "workflows",
       "start_workflow", body=StartBody, response=StartOut),
    Op("GET", "/api/workflows", client_api.list_workflows, C,
       "List workflows, newest first (projections)", "workflows", "list_workflows",
       query=_LIST_QUERY),
    Op("GET", _WF, client_api.status, C, "A workflow's status (the `status --json` object)",
       "workflows", "workflow_status"),
    Op("DELETE", _WF, deletion_api.delete_workflow, C,
       "Delete an ended workflow: its events (a WorkflowDeleted tombstone stays), logs and views "
       "(409 while it is open; ?reason=&by=)", "workflows", "delete_workflow"),
    Op("GET", _WF + "/status", client_api.status, C, "A workflow's status", "workflows",
       "workflow_status_alias", alias_of="workflow_status"),
    Op("GET", _WF + "/history", client_api.history, C, "Every event of a workflow, in order",
       "workflows", "workflow_history"),
    Op("POST", _WF + "/cancel", client_api.cancel, C, "Cancel a workflow", "workflows",
       "cancel_workflow", body=CancelBody),
    Op("POST", _WF + "/pause", control_api.pause, C,
       "Pause a running workflow: no new job is queued until it is resumed (409 if it ended)",
       "workflows", "pause_workflow", body=ControlBody, response=ControlOut),
    Op("POST", _WF + "/resume", control_api.resume, C,
       "Resume a paused workflow where it stopped (409 if it is not paused)", "workflows",
       "resume_workflow", body=ControlBody, response=ControlOut),
    Op("POST", _WF + "/retry", control_api.retry, C,
       "Run a failed or cancelled workflow's failed and cancelled jobs again (409 otherwise)",
       "workflows", "retry_workflow", body=ControlBody, response=ControlOut),
    Op("POST", _WF + "/rerun", control_api.rerun, C,
       "Run an ended workflow again from a job: it and everything downstream of it run as new "
       "attempts, the others keep their outputs (409 while it runs or is paused)", "workflows",
       "rerun_workflow", body=RerunBody, response=ControlOut),
    Op("POST", _WF + "/restart", control_api.restart, C,
       "Run an ended workflow again as a new run with the same definition and inputs (its id in "
       "restarted_as; 409 while it runs or is paused)", "workflows", "restart_workflow",
       body=ControlBody, response=ControlOut),
    Op("POST", _WF + "/vars", control_api.set_vars, C,
       "Set workflow variables (${{ vars.NAME }}) for the jobs not yet queued (409 if it ended)",
       "workflows", "set_workflow_vars", body=SetVarsBody, response=ControlOut),
    Op("POST", _WF + "/jobs/{job}/skip", control_api.skip, C,
       "Skip a pending, queued, waiting or failed job: its dependents proceed as if it had "
       "succeeded with these outputs (409 otherwise)", "workflows", "skip_job", body=SkipBody,
       response=ControlOut),
    Op("POST", _WF + "/signals/{name}", signals_api.signal, C,
       "Send a signal: the job waiting for it (wait_for) succeeds with data as its outputs; "
       "kept until the wait starts (409 for an ended workflow or a name no job waits for)",
       "workflows", "signal_workflow", body=signals_api.SignalBody, response=signals_api.SignalOut),
    Op("POST", "/api/hooks/{token}", hooks_api.hook, None,
       "Deliver a webhook to the job waiting for it (wait_for: webhook): a JSON body matching "
       "its match resumes it with the body as outputs (422 with why otherwise; the token, "
       "shown in status, is the credential)", "workflows", "deliver_webhook"),
    Op("GET", _WF + "/graph", inspect_api.graph, C,
       "The jobs with their edges (needs, needs_any) and views, and the log position folded",
       "workflows", "workflow_graph", response=GraphOut),
    Op("GET", _WF + "/jobs/{job}", inspect_api.job_detail, C,
       "A job: its definition, rendered command, every claim (epoch, worker, outcome)",
       "workflows", "job_detail", response=JobDetailOut),
    Op("GET", _WF + "/jobs/{job}/logs", client_api.job_logs, C,
       "A job's log lines, every attempt", "workflows", "job_logs", query=_LOGS_QUERY),
    Op("GET", _WF + "/jobs/{job}/logs/stream", streams.log_stream, C,
       "A job's log as server-sent events", "workflows", "job_logs_stream", stream=True,
       alias_of="job_logs"),
    # --- definitions by name and version (gateway/registry_api.py) ---
    Op("POST", "/api/definitions", registry_api.register, C,
       "Register a definition as name@version (201; 200: registered already; 409: other "
       "content under that version). JSON {workflow} or a YAML body", "definitions",
       "register_definition", body=RegisterDefinitionBody),
    Op("GET", "/api/definitions", registry_api.list_definitions, C,
       "Each registered name's latest version", "definitions", "list_definitions"),
    Op("GET", "/api/definitions/{reference}", registry_api.show, C,
       "A registered definition: name (the latest version) or name@version", "definitions",
       "show_definition"),
    # --- schedules (gateway/schedules_api.py) ---
    Op("POST", "/api/schedules", schedules_api.add, C,
       "Add a schedule: a run of the workflow (it needs a schedule:) with these inputs at each "
       "tick (201; 200: it held this already; 422: every problem). JSON {workflow, inputs, "
       "name} or a YAML body with ?input=KEY=VALUE&name=", "schedules", "add_schedule",
       body=schedules_api.AddScheduleBody),
    Op("GET", "/api/schedules", schedules_api.list_schedules, C,
       "Every schedule by name, with its next tick", "schedules", "list_schedules"),
    Op("GET", _SCHEDULE, schedules_api.show, C, "A schedule (404: unknown)", "schedules",
       "show_schedule"),
    Op("POST", _SCHEDULE + "/pause", schedules_api.pause, C,
       "Start no run for its ticks until resumed (changed: false if paused already)",
       "schedules", "pause_schedule", body=schedules_api.PauseScheduleBody),
    Op("POST", _SCHEDULE + "/resume", schedules_api.resume, C,
       "Tick again from its next tick (ticks while paused never run; changed: false if it was "
       "not paused)", "schedules", "resume_schedule"),
    Op("DELETE", _SCHEDULE, schedules_api.delete, C,
       "Remove a schedule: no run starts for it any more (the runs it started go on)",
       "schedules", "delete_schedule"),
    Op("GET", "/api/events", streams.event_stream, C,
       "Events as they are appended (server-sent events; Last-Event-ID resumes)", "events",
       "events", query=_EVENTS_QUERY, stream=True),
    Op("GET", "/api/workers", client_api.workers, C, "Live workers", "operations", "workers"),
    Op("GET", "/api/namespaces", client_api.list_namespaces, C,
       "The namespaces known (default, those with a quota, workers or workflows), each with its "
       "live workers and quota (running / max), and the one the request works in", "operations",
       "namespaces"),
    Op("GET", "/api/label-sets", inspect_api.label_sets, C,
       "Queued jobs by label set, with the live workers serving each (none: nobody does)",
       "operations", "label_sets", response=LabelSetsOut),
    Op("GET", "/api/lag", client_api.lag, C, "Events the projections have not applied yet",
       "operations", "lag"),
    Op("GET", "/api/dead-letters", client_api.dead_letters, A,
       "Input that could not be processed, and why", "operations", "dead_letters",
       query=(("limit", "at most this many, the newest (default 100)"),)),
    Op("GET", "/healthz", client_api.health, None, "Is the gateway connected to NATS?",
       "operations", "health"),
    Op("GET", "/metrics", metrics_api.metrics, None,
       "This process's Prometheus metrics (no token, as /healthz)", "operations", "metrics",
       text=metrics_api.CONTENT_TYPE),
)  # fmt: skip
