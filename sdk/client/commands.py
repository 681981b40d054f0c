"""The client's commands: start and cancel, each a request to the engine on ``JW_COMMANDS``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import nats.errors
from nats.js.errors import KeyNotFoundError

from events import priority as priority_rules
from events import subjects
from events.definition import WorkflowDefinition
from events.errors import JetworkError
from events.quotas import OverQuota, QuotaExceeded, QuotaRecord, quota_key
from events.requests import (
    CancelRequest,
    StartAnswer,
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
_ANSWER_TIMEOUT = 10.0
_QUOTA_TTL = 1.0


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
            workflow_id_for(idempotency_key, namespace=self._ns)
            if idempotency_key is not None
            else new_workflow_id()
        )
        try:
            request = StartRequest(
                workflow_id=workflow_id,
                definition=definition_mapping(definition),
                inputs=given,
                idempotency_key=idempotency_key,
                traceparent=traceparent or tracing.current_traceparent(),
                namespace=self._ns,
            )
            payload = request.model_dump_json().encode()
        except ValueError as exc:  # pydantic: a key too long, inputs that are not JSON data
            raise InvalidArgument(f"cannot send this start request: {exc}") from None
        if await self._refused_over_quota():
            # The engine decides (under compare-and-set); its answer says whether it refused.
            await self._start_answered(request, idempotency_key)
        else:
            await self._send(request.subject(), payload, request_msg_id(request), "starting")
        return RunHandle(cast("Client", self), workflow_id)

    async def _refused_over_quota(self) -> bool:
        """True when the client's namespace refuses starts over a workflow quota: then a start
        waits for the engine's answer, to raise ``QuotaExceeded`` with its reason."""
        now = time.monotonic()
        if self._refusing is not None and now - self._refusing[0] < _QUOTA_TTL:
            return self._refusing[1]  # read less than a second ago: starts in a loop pay once
        refusing = False
        with translated("reading the namespace's quota", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            try:
                entry = await kv.get(quota_key(self._namespace))
            except KeyNotFoundError:
                entry = None
        if entry is not None and entry.value:
            try:
                record = QuotaRecord.model_validate_json(entry.value)
            except ValueError:
                record = None
            refusing = record is not None and (
                record.max_running_workflows is not None and record.over_quota is OverQuota.REFUSE
            )
        self._refusing = (now, refusing)
        return refusing

    async def _start_answered(self, request: StartRequest, key: str | None) -> None:
        inbox = self._nc.new_inbox()
        answered = request.model_copy(update={"reply_to": inbox})
        with translated(f"starting {request.workflow_id}", url=self._url):
            answers = await self._nc.subscribe(inbox, max_msgs=1)
        try:
            payload = answered.model_dump_json().encode()
            await self._send(request.subject(), payload, request_msg_id(request), "starting")
            try:
                msg = await answers.next_msg(timeout=_ANSWER_TIMEOUT)
            except nats.errors.TimeoutError:
                return  # no engine answered in time: the start waits in the stream
        finally:
            with contextlib.suppress(Exception):
                await answers.unsubscribe()
        answer = StartAnswer.model_validate_json(msg.data)
        if not answer.accepted:
            raise QuotaExceeded(answer.error or f"the start of {request.workflow_id} was refused")

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
