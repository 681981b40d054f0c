"""The client API: what ``sdk.Client`` (and so the CLI) does, over HTTP + JSON.

Start (JSON or YAML body), status, list (filters, pagination), history, cancel, a job's logs,
workers, dead letters, the projections' lag. Live streams (``?follow=1`` logs, events) are in
``gateway.streams``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import orjson
from starlette.requests import Request
from starlette.responses import Response

from actors.definitions import load_workflow_text, parse_workflow
from events.definition import WorkflowDefinition
from events.requests import workflow_id_for
from gateway.context import context
from gateway.deletion_api import list_filters
from gateway.models import CancelBody, StartBody, StartOut
from gateway.streams import log_stream
from gateway.web import ApiError, Json, read_body, read_json, validated
from sdk.cli._render import event_record
from sdk.cli.run import parse_inputs
from sdk.client import Client
from sdk.client.definitions import checked_inputs

YAML_TYPES: Final = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)
MAX_LIST: Final = 10_000
"""Rows a listing may reach (offset plus limit)."""


async def start(request: Request) -> Response:
    """Start a workflow: 201 with its id, or 200 when the idempotency key names one already."""
    ctx = context(request)
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media in YAML_TYPES:
        text = (await read_body(request, ctx.settings.max_body)).decode("utf-8", "replace")
        definition = load_workflow_text(text, source="body")
        inputs = parse_inputs(request.query_params.getlist("input"), definition)
        key = request.query_params.get("idempotency_key") or request.headers.get("idempotency-key")
        priority = _int(request.query_params.get("priority"), "priority", default=0, low=1, high=10)
    else:
        body = validated(StartBody, await read_json(request, ctx.settings.max_body))
        definition = await _start_definition(ctx.client, body)
        inputs = dict(body.inputs)
        key = body.idempotency_key or request.headers.get("idempotency-key")
        priority = body.priority or 0
    checked_inputs(definition, inputs)
    if key is not None:
        existing = workflow_id_for(key)
        if await ctx.client.exists(existing):
            return Json(_started(request, existing, created=False), status_code=200)
    # A caller inside a trace of its own sends its W3C trace context: the run joins it.
    traceparent = request.headers.get("traceparent")
    handle = await ctx.client.start(
        definition,
        inputs=inputs,
        idempotency_key=key,
        traceparent=traceparent,
        priority=priority or None,
    )
    return Json(_started(request, handle.workflow_id, created=True), status_code=201)


async def _start_definition(client: Client, body: StartBody) -> WorkflowDefinition:
    """The body's ``workflow``, or the registered ``definition`` it names (``name@version``)."""
    if (body.workflow is None) == (body.definition is None):
        raise ApiError(422, "invalid_body", "give either workflow or definition (name@version)")
    if body.definition is not None:
        return (await client.definition(body.definition)).definition
    assert body.workflow is not None
    return workflow_definition(body.workflow)


def workflow_definition(raw: dict[str, Any] | str) -> WorkflowDefinition:
    if isinstance(raw, str):
        return load_workflow_text(raw, source="workflow")
    return parse_workflow(raw)


def _started(request: Request, workflow_id: str, *, created: bool) -> dict[str, Any]:
    url = str(request.url_for("workflow_status", workflow_id=workflow_id).path)
    return StartOut(workflow_id=workflow_id, created=created, url=url).model_dump()


async def status(request: Request) -> Response:
    view = await context(request).client.status(request.path_params["workflow_id"])
    return Json(view.to_json_dict())


async def list_workflows(request: Request) -> Response:
    """Newest first; ``status``, ``name``, ``limit`` (default 50) and ``cursor`` (from ``next``);
    ``since``, ``until``, ``input``, ``label``, ``parent`` (``gateway.deletion_api``)."""
    params = request.query_params
    limit = _int(params.get("limit"), "limit", default=50, low=1, high=1000)
    offset = _cursor(params.get("cursor"))
    if offset + limit > MAX_LIST:
        raise ApiError(422, "invalid_argument", f"listings stop at {MAX_LIST} rows")
    rows = await context(request).client.list(
        status=params.get("status") or None,
        name=params.get("name") or None,
        limit=offset + limit + 1,
        **list_filters(params),
    )
    page = rows[offset : offset + limit]
    more = len(rows) > offset + limit
    following = None
    if more:
        query = {k: v for k, v in params.items() if k != "cursor"}
        query["cursor"] = _encode_cursor(offset + limit)
        following = str(request.url.replace_query_params(**query))
    return Json(
        {
            "workflows": [row.model_dump(mode="json") for row in page],
            "next": following,
            "limit": limit,
        }
    )


async def history(request: Request) -> Response:
    events = await context(request).client.history(request.path_params["workflow_id"])
    return Json({"events": [event_record(recorded) for recorded in events]})


async def cancel(request: Request) -> Response:
    ctx = context(request)
    body = validated(CancelBody, await read_json(request, ctx.settings.max_body))
    workflow_id = request.path_params["workflow_id"]
    await ctx.client.cancel(workflow_id, reason=body.reason, force=body.force)
    return Json({"workflow_id": workflow_id, "cancel_requested": True}, status_code=202)


async def job_logs(request: Request) -> Response:
    """The job's log lines, every attempt; ``?follow=1`` as server-sent events."""
    if _flag(request.query_params.get("follow")):
        return await log_stream(request)
    ctx = context(request)
    workflow_id, job = request.path_params["workflow_id"], request.path_params["job"]
    lines = [line_json(line) async for line in ctx.client.logs(workflow_id, job)]
    return Json({"workflow_id": workflow_id, "job": job, "lines": lines})


def line_json(line: Any) -> dict[str, Any]:
    return {
        "attempt": line.attempt,
        "seq": line.seq,
        "stream": line.stream,
        "line": line.line,
        "time": line.time.isoformat(),
    }


async def workers(request: Request) -> Response:
    found = await context(request).client.workers()
    return Json({"workers": [info.model_dump(mode="json") for info in found]})


async def dead_letters(request: Request) -> Response:
    limit = _int(request.query_params.get("limit"), "limit", default=100, low=1, high=10_000)
    letters = await context(request).client.dead_letters(limit=limit)
    return Json({"dead_letters": [letter.model_dump(mode="json") for letter in letters]})


async def lag(request: Request) -> Response:
    return Json({"lag": await context(request).client.lag()})


async def health(request: Request) -> Response:
    ctx = context(request)
    connected = bool(ctx.nc.is_connected)
    return Json({"ok": connected, "nats": "connected" if connected else "disconnected"},
                status_code=200 if connected else 503)  # fmt: skip


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes", "on", ""}


def _int(value: str | None, name: str, *, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(422, "invalid_argument", f"{name} must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(422, "invalid_argument", f"{name} must be {low}-{high}, got {number}")
    return number


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        offset = int(decoded["offset"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ApiError(
            422, "invalid_argument", f"cursor {value[:40]!r} is not one we gave"
        ) from None
    if offset < 0:
        raise ApiError(422, "invalid_argument", "cursor out of range")
    return offset


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"offset": offset})).rstrip(b"=").decode()
