"""Definitions by name and version over HTTP (``sdk.Client.register_definition`` …).

``POST /api/definitions`` registers (JSON ``{"workflow": …}`` or a YAML body): 201 with the
stored ``name@version``, 200 when that content is registered already, 409 for other content under
an existing explicit ``version:``. ``GET /api/definitions`` lists each name's latest version;
``GET /api/definitions/{reference}`` (``name`` or ``name@version``) is one, with its definition.
Starting one by name is ``POST /api/workflows`` with ``{"definition": "name@2"}``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from actors.definitions import load_workflow_text
from actors.definitions.mapping import definition_mapping
from events.definition_store import StoredDefinition
from gateway.client_api import YAML_TYPES, workflow_definition
from gateway.context import context
from gateway.models import RegisterDefinitionBody
from gateway.web import Json, read_body, read_json, validated


def stored_out(stored: StoredDefinition, **extra: Any) -> dict[str, Any]:
    return {
        "name": stored.name,
        "version": stored.version,
        "reference": stored.reference(),
        "registered_at": stored.registered_at.isoformat(),
        "digest": stored.digest,
        "definition": definition_mapping(stored.definition),
        **extra,
    }


async def register(request: Request) -> Response:
    ctx = context(request)
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media in YAML_TYPES:
        text = (await read_body(request, ctx.settings.max_body)).decode("utf-8", "replace")
        definition = load_workflow_text(text, source="body")
    else:
        body = validated(RegisterDefinitionBody, await read_json(request, ctx.settings.max_body))
        definition = workflow_definition(body.workflow)
    stored, created = await ctx.client.register_definition(definition)
    return Json(stored_out(stored, created=created), status_code=201 if created else 200)


async def list_definitions(request: Request) -> Response:
    rows = await context(request).client.definitions()
    return Json({"definitions": [stored_out(stored, versions=count) for stored, count in rows]})


async def show(request: Request) -> Response:
    stored = await context(request).client.definition(request.path_params["reference"])
    return Json(stored_out(stored))
