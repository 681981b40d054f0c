"""The client's commands: start and cancel, each a request to the engine on ``JW_COMMANDS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from events import priority as priority_rules
from events.definition import WorkflowDefinition
from events.errors import JetworkError
from events.requests import (
    CancelRequest,
    StartRequest,
    new_workflow_id,
    request_msg_id,
    workflow_id_for,
)
from sdk.client.base import ClientBase
from sdk.client.definitions import (
    WorkflowSource,
    checked_inputs,
    definition_mapping,
    resolve_definition,
)
from sdk.client.handle import RunHandle
from sdk.client.registry import resolve_named_children, resolve_source
from sdk.client.translate import translated
from sdk.errors import InvalidArgument
from telemetry import tracing

if TYPE_CHECKING:
    from sdk.client.core import Client

_PUBLISH_ATTEMPTS = 3


class ClientCommands(ClientBase):
    """``Client.start`` and ``Client.cancel``."""

    async def start(
        self,
        workflow_or_path: WorkflowSource,
        *,
        inputs: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        priority: int | None = None,
    ) -> RunHandle:
        """Validate a workflow and its inputs here, then ask the engine to start it.

        ``workflow_or_path`` is a YAML file's path, a registered definition's ``name`` or
        ``name@version`` (an existing file of that name wins), a ``WorkflowDefinition``, a
        builder ``Workflow`` or a raw mapping. Sub-workflows named ``workflow: NAME[@VERSION]``
        are looked up in the registry now and pinned (``deploy`` runs as ``deploy@3`` however
        many versions are registered later). Raises ``InvalidWorkflow`` listing every problem
        (with file and line for files; an unknown name at its job) before anything is sent.
        With an ``idempotency_key`` the id is derived from the key, so starting again with the
        same key returns the same workflow. The run joins the caller's trace: ``traceparent``
        (W3C), else the current OpenTelemetry span's, when there is one
        (``telemetry/tracing.py``).
        ``priority`` (1..10) is this run's: it replaces the definition's top-level ``priority``
        (jobs with their own keep theirs).
        """
        definition = resolve_definition(await resolve_source(self, workflow_or_path))
        definition = await resolve_named_children(self, definition)
        definition = with_priority(definition, priority)
        given = dict(inputs or {})
        checked_inputs(definition, given)
        workflow_id = (
            workflow_id_for(idempotency_key) if idempotency_key is not None else new_workflow_id()
        )
        try:
            request = StartRequest(
                workflow_id=workflow_id,
                definition=definition_mapping(definition),
                inputs=given,
                idempotency_key=idempotency_key,
                traceparent=traceparent or tracing.current_traceparent(),
            )
            payload = request.model_dump_json().encode()
        except ValueError as exc:  # pydantic: a key too long, inputs that are not JSON data
            raise InvalidArgument(f"cannot send this start request: {exc}") from None
        await self._send(request.subject(), payload, request_msg_id(request), "starting")
        return RunHandle(cast("Client", self), workflow_id)

    async def cancel(
        self, workflow_id: str, *, reason: str = "cancelled by user", force: bool = False
    ) -> None:
        """Ask the engine to cancel a workflow.

        Running jobs are told to stop; jobs whose condition holds under cancellation
        (``if: always()``) still run unless ``force``. Cancelling an ended workflow changes
        nothing. Raises ``WorkflowNotFound`` for an id that was never started.
        """
        await self._require_known(workflow_id)
        try:
            request = CancelRequest(workflow_id=workflow_id, reason=reason, force=force)
        except ValueError as exc:
            raise InvalidArgument(f"cannot send this cancel request: {exc}") from None
        # A forced cancel must not be de-duplicated against a plain one sent just before.
        msg_id = request_msg_id(request) + (".force" if force else "")
        await self._send(request.subject(), request.model_dump_json().encode(), msg_id, "cancel")

    async def _send(self, subject: str, payload: bytes, msg_id: str, what: str) -> None:
        js = self._nc.jetstream()
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                with translated(f"{what} {subject.rsplit('.', 1)[-1]}", url=self._url):
                    await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
                return
            except JetworkError as exc:
                # The same msg id makes a retry after a lost ack harmless.
                if not exc.retryable or attempt == _PUBLISH_ATTEMPTS:
                    raise


def with_priority(definition: WorkflowDefinition, priority: int | None) -> WorkflowDefinition:
    """``definition`` with a start's ``priority`` as its top-level one: a run's priority is
    recorded in its ``WorkflowStarted`` with the definition, so a restart keeps it."""
    if priority is None:
        return definition
    why = priority_rules.problem(priority)
    if why is not None:
        raise InvalidArgument(f"priority {why}")
    return definition.model_copy(update={"priority": priority})
