"""Webhooks: ``POST /api/hooks/<token>`` resumes the job whose wait the token names
(``wait_for: {webhook: {match: {...}}}``) when the JSON body matches.

The token is the credential (no bearer token: a payment provider has none): it is verified with
the gateway's secret (``events.hooks``); one that does not verify is 404. The body must be a JSON
object whose every key of the wait's rendered ``match`` is equal, else 422 with why; a wait that
is over (succeeded with another body, timed out, cancelled, a later attempt) is 409; the same body
again after it succeeded is 200 ``changed: false`` (a provider's retry). Every refusal is counted
(``jetwork_webhooks_refused_total{reason}``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from actors import workflow
from actors.signals import match_problems
from actors.workflow import WorkflowState
from events.catalog import JobStatus
from events.errors import CommandRefused
from gateway.context import context
from gateway.web import ApiError, Json, read_json
from telemetry import metrics


def _refuse(status: int, code: str, reason: str, message: str) -> ApiError:
    metrics.child(metrics.WEBHOOKS_REFUSED, reason).inc()
    return ApiError(status, code, message)


async def hook(request: Request) -> Response:
    ctx = context(request)
    waited = ctx.hooks.verify(request.path_params["token"]) if ctx.hooks is not None else None
    if waited is None:
        raise _refuse(
            404, "unknown_hook", "unknown_hook", "no such hook (or its secret was rotated)"
        )
    body: Any = await read_json(request, ctx.settings.max_body)
    if not isinstance(body, dict):
        raise _refuse(422, "invalid_body", "invalid_body", "the body must be a JSON object")
    history = await ctx.client.history(waited.workflow_id)
    state = workflow.replay(history, WorkflowState(workflow_id=waited.workflow_id))
    current = state.job(waited.job)
    wait = current.wait
    if current.status is JobStatus.WAITING and current.attempt == waited.attempt:
        problems = match_problems(wait.match or {}, body) if wait is not None else []
        if problems:
            message = "the body does not match: " + "; ".join(problems)
            raise _refuse(422, "no_match", "no_match", message)
    try:
        result = await ctx.client.deliver_hook(waited.workflow_id, waited.job, waited.attempt, body)
    except CommandRefused as refused:
        raise _refuse(409, "refused", "wait_over", str(refused)) from None
    out = {
        "workflow_id": waited.workflow_id,
        "job": waited.job,
        "applied": result.applied,
        "changed": result.changed,
    }
    return Json(out, status_code=200 if result.applied else 202)
