"""Schedules over HTTP (``sdk.Client.add_schedule`` …, ``jetwork schedules``).

``POST /api/schedules`` adds one (JSON ``{"workflow": …, "inputs": {…}, "name": …}``, or a YAML
body with ``?input=KEY=VALUE`` and ``?name=``): 201 when it was added or replaced, 200 when it
held this content and these inputs already; 422 with every located problem for an invalid
definition, one without a ``schedule:``, or inputs it refuses. ``GET /api/schedules`` lists
them by name, ``GET /api/schedules/{name}`` is one; ``POST …/pause`` and ``…/resume`` answer
the schedule afterwards with ``changed``; ``DELETE`` removes it (the runs it started go on).
The schedule JSON is ``jetwork schedules --json``'s.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from actors.definitions import load_workflow_text
from gateway.client_api import YAML_TYPES, workflow_definition
from gateway.context import context
from gateway.web import Json, read_body, read_json, validated
from sdk.cli.run import parse_inputs
from sdk.cli.schedules import entry_json

_DEFAULT_BY = "http"


class AddScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: dict[str, Any] | str = Field(
        description="the workflow as JSON (what the YAML file holds) or as YAML text; it must "
        "have a schedule:"
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="the inputs of every run")
    name: str | None = Field(
        default=None, description="the schedule's name (default: its workflow's)"
    )


class PauseScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str | None = Field(
        default=None, min_length=1, max_length=256, description="who, shown while paused"
    )


async def add(request: Request) -> Response:
    ctx = context(request)
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media in YAML_TYPES:
        text = (await read_body(request, ctx.settings.max_body)).decode("utf-8", "replace")
        definition = load_workflow_text(text, source="body")
        inputs = parse_inputs(request.query_params.getlist("input"), definition)
        name = request.query_params.get("name") or None
    else:
        body = validated(AddScheduleBody, await read_json(request, ctx.settings.max_body))
        definition = workflow_definition(body.workflow)
        inputs, name = dict(body.inputs), body.name
    entry, changed = await ctx.client.add_schedule(definition, inputs=inputs, name=name)
    return Json({**entry_json(entry), "changed": changed}, status_code=201 if changed else 200)


async def list_schedules(request: Request) -> Response:
    entries = await context(request).client.schedules()
    return Json({"schedules": [entry_json(entry) for entry in entries]})


async def show(request: Request) -> Response:
    return Json(entry_json(await context(request).client.schedule(request.path_params["name"])))


async def pause(request: Request) -> Response:
    ctx = context(request)
    body = validated(PauseScheduleBody, await read_json(request, ctx.settings.max_body))
    name = request.path_params["name"]
    changed = await ctx.client.pause_schedule(name, by=body.by or _DEFAULT_BY)
    return Json({**entry_json(await ctx.client.schedule(name)), "changed": changed})


async def resume(request: Request) -> Response:
    ctx = context(request)
    name = request.path_params["name"]
    changed = await ctx.client.resume_schedule(name)
    return Json({**entry_json(await ctx.client.schedule(name)), "changed": changed})


async def delete(request: Request) -> Response:
    name = request.path_params["name"]
    await context(request).client.delete_schedule(name)
    return Json({"name": name, "deleted": True})
