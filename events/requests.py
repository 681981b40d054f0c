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
    reply_to: str | None = Field(
        default=None, max_length=256, pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$"
    )

    def subject(self) -> str:
        return subjects.command("start", self.workflow_id)


class CancelRequest(_Request):
    type: Literal["cancel"] = "cancel"
    reason: str = Field(default="cancelled by user", max_length=2000)
    force: bool = False

    def subject(self) -> str:
        return subjects.command("cancel", self.workflow_id)


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


AnyRequest = Annotated[StartRequest | CancelRequest, Field(discriminator="type")]
REQUESTS: TypeAdapter[StartRequest | CancelRequest] = TypeAdapter(AnyRequest)


def new_workflow_id() -> str:
    return f"wf-{uuid.uuid4().hex[:20]}"


def workflow_id_for(idempotency_key: str) -> str:
    """The one workflow id an idempotency key stands for (so a repeated start lands on it)."""
    return "wf-k" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def request_msg_id(request: StartRequest | CancelRequest) -> str:
    # De-duplicates a client's retried publish within the commands stream's window.
    return f"{request.type}.{request.workflow_id}"
