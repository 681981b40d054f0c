"""Request and response bodies (their JSON schemas are the OpenAPI document's components).

Worker protocol bodies are those of workflow-graph's HTTP workers; unknown fields are ignored so
workers written for it work unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.settings import DEFAULT_LEASE_TTL, MAX_LEASE_TTL, MAX_WAIT

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
"""An id, job name, label or handler: 1-128 letters, digits, '_' or '-'."""
Scalar = str | int | float | bool


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- worker protocol -----------------------------------------------------------------------------


class RegisterBody(_Lenient):
    worker_id: Token
    labels: list[Token] = Field(default_factory=list)
    handlers: list[Token] = Field(
        default_factory=list, description="Python-style handler names (jobs with `uses:`)"
    )


class ClaimBody(_Lenient):
    worker_id: Token
    labels: list[Token] = Field(default_factory=list)
    handlers: list[Token] = Field(default_factory=list)
    lease_ttl_secs: float = Field(default=DEFAULT_LEASE_TTL, gt=0, le=MAX_LEASE_TTL)
    wait_secs: float = Field(
        default=0, ge=0, le=MAX_WAIT, description="long-poll: wait this long for a job"
    )


class JobOut(BaseModel):
    job_id: str
    workflow_id: str
    command: str | None = Field(description="the job's `run:`, null for a `uses:` job")
    required_labels: list[str]
    attempt: int
    epoch: int = Field(description="the claim's fencing token")
    env: dict[str, str]
    upstream_outputs: dict[str, dict[str, str]]
    uses: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout_secs: float | None = None


class LeaseOut(BaseModel):
    lease_id: str
    job_id: str
    workflow_id: str
    worker_id: str
    ttl_secs: float
    granted_at_ms: int
    epoch: int
    attempt: int


class ClaimOut(BaseModel):
    job: JobOut
    lease: LeaseOut


class LogChunkIn(_Lenient):
    workflow_id: str | None = None
    job_id: str | None = None
    sequence: int = 0
    data: str
    timestamp_ms: int | None = None
    stream: str = "stdout"


class LogsBody(_Lenient):
    chunks: list[LogChunkIn] = Field(max_length=10_000)


class CompleteBody(_Lenient):
    outputs: dict[Token, Scalar] = Field(default_factory=dict)
    result: Any = Field(default=None, description="the job's JSON result, if any")


class FailBody(_Lenient):
    error: str = ""
    retryable: bool = True


class HeartbeatOut(BaseModel):
    ok: bool = True
    expires_at_ms: int


# --- client API ----------------------------------------------------------------------------------


class StartBody(_Lenient):
    workflow: dict[str, Any] | str | None = Field(
        default=None, description="the workflow as JSON (what the YAML file holds) or as YAML text"
    )
    definition: str | None = Field(
        default=None,
        max_length=200,
        description="instead of workflow: a registered definition, name (its latest version) "
        "or name@version",
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=1024)
    priority: int | None = Field(
        default=None,
        ge=1,
        le=10,
        strict=True,
        description="this run's priority, 1..10 (replaces the workflow's; jobs with their own "
        "keep it)",
    )


class StartOut(BaseModel):
    workflow_id: str
    created: bool = Field(description="false: the idempotency key named an existing workflow")
    url: str


class RegisterDefinitionBody(_Lenient):
    workflow: dict[str, Any] | str = Field(
        description="the workflow as JSON (what the YAML file holds) or as YAML text; its "
        "version: is the version to register, else the latest + 1"
    )


class CancelBody(_Lenient):
    reason: str = Field(default="cancelled by user", max_length=4096)
    force: bool = False


class ControlBody(_Lenient):
    """An operator's pause, resume or retry (the body may be empty)."""

    by: str | None = Field(
        default=None, min_length=1, max_length=256, description="who, for the log (default http)"
    )
    reason: str | None = Field(default=None, max_length=2000, description="why, for the log")
    timeout: float = Field(
        default=5.0, ge=0, le=30, description="seconds to wait for the engine's answer"
    )


class SkipBody(ControlBody):
    outputs: dict[str, Scalar] = Field(
        default_factory=dict, description="what the job's dependents read as its outputs"
    )


class RerunBody(ControlBody):
    from_job: str = Field(
        alias="from",
        min_length=1,
        max_length=128,
        description="the job to run again, with everything downstream of it",
    )


class SetVarsBody(ControlBody):
    values: dict[str, Any] = Field(
        description="variable name -> any JSON value, read as ${{ vars.NAME }} by jobs not yet "
        "queued"
    )


class ControlOut(BaseModel):
    workflow_id: str
    command: str = Field(description="pause, resume, skip, retry, rerun, restart or set")
    applied: bool = Field(
        description="false: no engine answered in time; stored, applied when one runs (202)"
    )
    changed: bool = Field(description="false: it held already (e.g. pausing a paused workflow)")
    job: str | None = Field(default=None, description="the job skipped, or a rerun's from")
    restarted_as: str | None = Field(default=None, description="a restart's new run")


class ErrorOut(BaseModel):
    error: str
    code: str
    status: int
    problems: list[str] | None = None
