"""Signals over HTTP: ``POST /api/workflows/{id}/signals/{name}`` (``sdk.Client.signal``).

The body (it may be empty) carries the signal's ``data`` (a JSON object: the waiting job's
outputs), an optional ``signal_id`` (the same id again records nothing), ``by`` and ``timeout``.
200 once the engine recorded it (``changed`` false: that id was recorded already), 202 when no
engine answered in time (stored, recorded when one runs), 409 ``refused`` for an ended workflow,
one being cancelled or a signal name no job of it waits for, 404 for an unknown workflow.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from gateway.context import context
from gateway.models import ControlBody, Token
from gateway.web import Json, read_json, validated


class SignalBody(ControlBody):
    data: dict[str, Any] = Field(
        default_factory=dict, description="a JSON object: the waiting job's outputs"
    )
    signal_id: Token | None = Field(
        default=None, description="the signal's id: sending it again records nothing"
    )


class SignalOut(BaseModel):
    workflow_id: str
    command: str = Field(description="signal")
    signal: str = Field(description="the signal's name")
    applied: bool = Field(
        description="false: no engine answered in time; stored, recorded when one runs (202)"
    )
    changed: bool = Field(description="false: a signal with this id was recorded already")


async def signal(request: Request) -> Response:
    body = validated(SignalBody, await read_json(request, context(request).settings.max_body))
    name = request.path_params["name"]
    result = await context(request).client.signal(
        request.path_params["workflow_id"],
        name,
        body.data,
        body.signal_id,
        by=body.by or "http",
        answer_timeout=body.timeout,
    )
    out = SignalOut(**result.to_json_dict(), signal=name)
    return Json(out.model_dump(), status_code=200 if result.applied else 202)
