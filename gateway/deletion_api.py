"""Deleting a workflow and filtering listings over HTTP (``sdk.Client.delete`` and ``list``).

``DELETE /api/workflows/{id}``: 200 with the tombstone once deleted, 409 ``refused`` for a
workflow that has not ended (nothing of it is touched), 404 for an unknown one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from gateway.context import context
from gateway.web import ApiError, Json
from projections.search import parse_moment

_DEFAULT_BY = "http"


async def delete_workflow(request: Request) -> Response:
    params = request.query_params
    deleted = await context(request).client.delete(
        request.path_params["workflow_id"],
        reason=params.get("reason") or None,
        by=params.get("by") or _DEFAULT_BY,
    )
    return Json(
        {
            "workflow_id": deleted.workflow_id,
            "name": deleted.name,
            "status": deleted.status,
            "deleted": True,
            "tombstone_seq": deleted.tombstone_seq,
            "by": deleted.by,
            "at": deleted.at.isoformat(),
        }
    )


def list_filters(params: QueryParams) -> dict[str, Any]:
    """The ``Client.list`` arguments of ``since``, ``until``, ``input`` (repeated ``k=v``),
    ``label`` (repeated) and ``parent``; 422 naming the parameter for a bad one."""
    now = datetime.now(UTC)
    found: dict[str, Any] = {}
    for name in ("since", "until"):
        text = params.get(name)
        if text:
            try:
                found[name] = parse_moment(text, now=now)
            except ValueError as exc:
                raise ApiError(422, "invalid_argument", f"{name}: {exc}") from None
    inputs: dict[str, str] = {}
    for pair in params.getlist("input"):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ApiError(422, "invalid_argument", f"input: {pair!r} is not KEY=VALUE")
        inputs[key] = value
    if inputs:
        found["inputs"] = inputs
    if labels := params.getlist("label"):
        found["labels"] = labels
    if params.get("parent"):
        found["parent"] = params["parent"]
    return found
