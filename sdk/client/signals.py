"""``Client.signal``: deliver a signal to a workflow whose jobs ``wait_for`` it.

Sent as an operator's control is (``sdk.client.control``): checked first against the workflow's
log with the actor's own decision, then sent on ``cmd.<p>.signal.<wf>`` with a ``reply_to`` inbox;
the engine records it (``SignalReceived``) and answers, or refuses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from events.requests import HookRequest, SignalRequest
from sdk.client.control import DEFAULT_ANSWER_TIMEOUT, ClientControl, ControlResult
from sdk.client.translate import require_id
from sdk.errors import InvalidArgument


class ClientSignals(ClientControl):
    """``Client.signal``."""

    async def signal(
        self,
        workflow_id: str,
        name: str,
        data: Mapping[str, Any] | None = None,
        signal_id: str | None = None,
        *,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Send signal ``name`` to the workflow: the job that waits for it (``wait_for:
        {signal: NAME}``) succeeds with ``data`` (a JSON object) as its outputs; sent before the
        wait starts, it is kept until then.

        ``signal_id`` (default: a new one) makes a retried send harmless: the same id again
        records nothing (``changed`` False). Raises ``CommandRefused`` when the workflow has
        ended, is being cancelled or is unknown, or when no job of it waits for ``name``.
        """
        require_id(name, what="signal name")
        if signal_id is not None:
            require_id(signal_id, what="signal id")
        given = dict(data or {})
        try:
            orjson.dumps(given)
        except TypeError as exc:
            raise InvalidArgument(f"signal data must be JSON: {exc}") from None
        return await self._control(
            SignalRequest,
            workflow_id,
            reason=None,
            by=by,
            answer_timeout=answer_timeout,
            name=name,
            data=given,
            signal_id=signal_id or uuid.uuid4().hex,
        )

    async def deliver_hook(
        self,
        workflow_id: str,
        job: str,
        attempt: int,
        body: Mapping[str, Any],
        *,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Deliver a webhook request's JSON ``body`` to the wait ``attempt`` of ``job`` (what
        ``POST /api/hooks/<token>`` does once the token verified): the job succeeds with the body
        as outputs if it matches. Raises ``CommandRefused`` (the body does not match, the wait is
        over) and ``JobNotFound``."""
        require_id(job, what="job name")
        return await self._control(
            HookRequest,
            workflow_id,
            reason=None,
            by="webhook",
            answer_timeout=answer_timeout,
            job=job,
            attempt=attempt,
            body=dict(body),
        )
