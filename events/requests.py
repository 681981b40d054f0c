"""Commands as they travel on ``cmd.<name>.<wf>``: plain JSON any client in any language can send.

A start request carries the workflow definition *unvalidated* (the mapping a YAML file parses to):
the engine validates it and dead-letters what is invalid. Workflow ids are chosen by the client so
that it knows the id before the engine answers; an idempotency key maps to one id, always. A start
may name a ``reply_to`` subject (a core NATS inbox): the engine then publishes a ``StartAnswer``
there once it has started the workflow or refused it, so a client in any language learns the
outcome without reading the log.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from events import subjects
from events.catalog import ParentLink

_SUBJECT = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"  # where to answer: no wildcards
_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"
# W3C Trace Context, version 00: ``00-<trace id>-<parent span id>-<flags>`` in lower-case hex.
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = 1
    workflow_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")


class StartRequest(_Request):
    type: Literal["start"] = "start"
    definition: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=512)
    # Where the engine answers (no wildcards: a subject one can publish to).
    reply_to: str | None = Field(default=None, max_length=256, pattern=_SUBJECT)
    # A restart's new run: the workflow it runs again (the engine sends this start).
    restarted_from: str | None = Field(default=None, pattern=_TOKEN)
    # The caller's W3C trace context: the run's trace joins the caller's (telemetry/tracing.py).
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT_PATTERN)
    # A sub-workflow: the parent job's attempt it runs for (the parent's engine sends this start).
    parent: ParentLink | None = None

    def subject(self) -> str:
        return subjects.command("start", self.workflow_id)


class CancelRequest(_Request):
    type: Literal["cancel"] = "cancel"
    reason: str = Field(default="cancelled by user", max_length=2000)
    force: bool = False

    def subject(self) -> str:
        return subjects.command("cancel", self.workflow_id)


class _ControlRequest(_Request):
    """An operator's control of a run. ``by``: who (recorded in the log, with ``reason``);
    ``request_id``: the sender's id for this request (a redelivery of it changes nothing; the
    Python client also makes it the message id); ``reply_to``: where the engine answers with a
    ``ControlAnswer``."""

    by: str = Field(default="unknown", min_length=1, max_length=256)
    reason: str | None = Field(default=None, max_length=2000)
    request_id: str | None = Field(default=None, pattern=_TOKEN)
    reply_to: str | None = Field(default=None, max_length=256, pattern=_SUBJECT)

    def subject(self) -> str:
        return subjects.command(self.type, self.workflow_id)  # type: ignore[attr-defined]


class PauseRequest(_ControlRequest):
    type: Literal["pause"] = "pause"


class ResumeRequest(_ControlRequest):
    type: Literal["resume"] = "resume"


class SkipRequest(_ControlRequest):
    type: Literal["skip"] = "skip"
    job: str = Field(pattern=_TOKEN)
    outputs: dict[str, str] = Field(default_factory=dict)


class RetryRequest(_ControlRequest):
    type: Literal["retry"] = "retry"


class RerunRequest(_ControlRequest):
    type: Literal["rerun"] = "rerun"
    job: str = Field(pattern=_TOKEN)  # ``from`` on the command line and over HTTP


class RestartRequest(_ControlRequest):
    """Run the ended workflow again as a new run, ``restarted_as`` (the sender chooses its id,
    as for a start, so that it knows it before the engine answers)."""

    type: Literal["restart"] = "restart"
    restarted_as: str = Field(pattern=_TOKEN)


class SignalRequest(_ControlRequest):
    """A signal to the workflow (``wait_for: {signal: NAME}``): ``data``, a JSON object, becomes
    the outputs of the job that waits for it. ``signal_id`` (the sender's) makes a retried send
    harmless: a second signal with the same id records nothing (also the message id)."""

    type: Literal["signal"] = "signal"
    name: str = Field(pattern=_TOKEN)
    data: dict[str, Any] = Field(default_factory=dict)
    signal_id: str | None = Field(default=None, pattern=_TOKEN)


class HookRequest(_ControlRequest):
    """A webhook request to the hook of ``job``'s wait ``attempt`` (``POST /api/hooks/<token>``,
    sent by the gateway once the token verified): ``body`` resumes the job if it matches."""

    type: Literal["hook"] = "hook"
    job: str = Field(pattern=_TOKEN)
    attempt: int = Field(ge=1)
    body: dict[str, Any] = Field(default_factory=dict)


class SetVarsRequest(_ControlRequest):
    """Set workflow variables (``${{ vars.KEY }}``) for the jobs not yet queued: ``values`` maps
    each name (``[A-Za-z_][A-Za-z0-9_]*``) to any JSON value."""

    type: Literal["set"] = "set"
    values: dict[str, Any]


class ChildEndedRequest(_Request):
    """A sub-workflow ended: sent by the child's engine to its parent's partition
    (``workflow_id`` is the parent). It settles attempt ``attempt`` of the parent's ``job``."""

    type: Literal["child_ended"] = "child_ended"
    job: str = Field(pattern=_TOKEN)
    attempt: int = Field(ge=1)
    child_id: str = Field(pattern=_TOKEN)
    status: Literal["succeeded", "failed", "cancelled"]
    reason: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)

    def subject(self) -> str:
        return subjects.command("child_ended", self.workflow_id)


class AdmitRequest(_Request):
    """Run ``run`` of the workflow was given a slot of its concurrency group ``group``: sent by
    whichever engine changed the group's queue (``actors/engine/groups.py``)."""

    type: Literal["admit"] = "admit"
    run: int = Field(ge=0)
    group: str = Field(pattern=_TOKEN)

    def subject(self) -> str:
        return subjects.command("admit", self.workflow_id)


ControlRequest = (
    PauseRequest
    | ResumeRequest
    | SkipRequest
    | RetryRequest
    | RerunRequest
    | RestartRequest
    | SignalRequest
    | HookRequest
    | SetVarsRequest
)


class ControlAnswer(BaseModel):
    """The engine's answer to a control request that named ``reply_to``.

    ``accepted``: applied (``changed`` False: it held already, e.g. pausing a paused workflow).
    Otherwise ``error`` says why it was refused (also dead-lettered): the workflow is unknown, or
    the command makes no sense in its state.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str
    command: str
    accepted: bool
    changed: bool = False
    error: str | None = None
    restarted_as: str | None = None  # a restart's new run, once accepted


class StartAnswer(BaseModel):
    """The engine's answer to a start that named ``reply_to``.

    ``accepted``: the workflow exists (``created`` says whether this start created it or it
    existed already, e.g. a repeated idempotency key). Otherwise ``error`` says why it was refused
    (every problem of an invalid definition or inputs); the request is also dead-lettered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str
    accepted: bool
    created: bool = False
    error: str | None = None


AnyRequest = StartRequest | CancelRequest | ControlRequest | ChildEndedRequest | AdmitRequest
REQUESTS: TypeAdapter[AnyRequest] = TypeAdapter(Annotated[AnyRequest, Field(discriminator="type")])


def new_workflow_id() -> str:
    return f"wf-{uuid.uuid4().hex[:20]}"


def workflow_id_for(idempotency_key: str) -> str:
    """The one workflow id an idempotency key stands for (so a repeated start lands on it)."""
    return "wf-k" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def request_msg_id(request: AnyRequest) -> str:
    # De-duplicates a client's retried publish within the commands stream's window. A control
    # request is one of many of its kind (pause, resume, pause again): its own id tells them apart.
    if isinstance(request, ChildEndedRequest):
        return f"{request.type}.{request.child_id}"
    if isinstance(request, AdmitRequest):
        return f"admit.{request.workflow_id}.r{request.run}"
    own = getattr(request, "signal_id", None) or getattr(request, "request_id", None)
    return f"{request.type}.{request.workflow_id}" + (f".{own}" if own else "")
