"""The OpenAPI 3.1 document (``/openapi.json``) and a readable reference page (``/docs``), both
made from ``gateway.routes.OPERATIONS`` and the bodies' pydantic models: they cannot drift."""

from __future__ import annotations

import html
import re
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.models import ErrorOut
from gateway.routes import OPERATIONS, Op

_ERRORS = {
    "400": "malformed JSON",
    "401": "no or unknown bearer token",
    "403": "the token's role may not do this",
    "404": "unknown workflow, job or lease",
    "409": "the lease is no longer current (worker protocol)",
    "413": "the body is too large",
    "422": "invalid body or parameters (every problem, located)",
    "503": "NATS unavailable: try again",
}


def document(*, version: str, secured: bool) -> dict[str, Any]:
    models: list[type[BaseModel]] = [ErrorOut]
    for op in OPERATIONS:
        models += [m for m in (op.body, op.response) if m is not None]
    _, schemas = models_json_schema(
        [(m, "validation") for m in dict.fromkeys(models)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, secured)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "jetwork HTTP gateway",
            "version": version,
            "description": "The worker protocol of workflow-graph's HTTP workers and the client "
            "API of jetwork. Every error is JSON (ErrorOut). See docs/http.md.",
        },
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


def _operation(op: Op, secured: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    spec |= {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        + [
            {"name": name, "in": "query", "description": text, "schema": {"type": "string"}}
            for name, text in op.query
        ],
    }
    if op.role is not None:
        spec["description"] = f"Role: {op.role} (or admin)."
        if secured:
            spec["security"] = [{"bearer": []}]
    if op.alias_of:
        spec["description"] = spec.get("description", "") + f" Same as {op.alias_of}."
    if op.body is not None:
        spec["requestBody"] = {
            "content": {"application/json": {"schema": _ref(op.body)}},
            "required": op.name not in {"heartbeat"},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if op.stream:
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    elif op.text is not None:
        ok["content"] = {op.text: {"schema": {"type": "string"}}}
    elif op.response is not None:
        schema: dict[str, Any] = _ref(op.response)
        if op.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        ok["content"] = {"application/json": {"schema": schema}}
    else:
        ok["content"] = {"application/json": {"schema": {}}}
    status = "201" if op.name == "start_workflow" else "200"
    error = {"content": {"application/json": {"schema": _ref(ErrorOut)}}}
    spec["responses"] = {status: ok} | {
        code: {"description": text, **error} for code, text in _ERRORS.items()
    }
    return spec


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def reference_page(doc: dict[str, Any]) -> str:
    """A plain HTML page listing every operation with its body and answer (no scripts)."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>jetwork HTTP API</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;"
        "overflow:auto}h3{margin-bottom:.2rem}.m{font-weight:bold;color:#05a}</style>",
        "</head><body><h1>jetwork HTTP API</h1>",
        f"<p>{html.escape(doc['info']['description'])} Machine-readable: "
        "<a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, methods in doc["paths"].items():
        for method, spec in methods.items():
            by_tag.setdefault(spec["tags"][0], []).append((method, path, spec))
    schemas = doc["components"]["schemas"]
    for tag, ops in by_tag.items():
        out.append(f"<h2>{html.escape(tag)}</h2>")
        for method, path, spec in ops:
            out.append(
                f"<h3><span class='m'>{method.upper()}</span> <code>{html.escape(path)}</code></h3>"
            )
            out.append(
                f"<p>{html.escape(spec['summary'])}. {html.escape(spec.get('description', ''))}</p>"
            )
            query = [p for p in spec["parameters"] if p["in"] == "query"]
            if query:
                items = "".join(
                    f"<li><code>{p['name']}</code>: {html.escape(p.get('description', ''))}</li>"
                    for p in query
                )
                out.append(f"<p>Query:</p><ul>{items}</ul>")
            body = spec.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                out.append("<p>Body:</p>" + _schema_html(body["schema"], schemas))
            answer = next(iter(spec["responses"].values())).get("content", {})
            for media, content in answer.items():
                if content.get("schema"):
                    out.append(
                        f"<p>Answer ({media}):</p>" + _schema_html(content["schema"], schemas)
                    )
    out.append("<h2>errors</h2><ul>")
    out += [f"<li><code>{code}</code>: {html.escape(text)}</li>" for code, text in _ERRORS.items()]
    out.append("</ul><p>Body of every error:</p>" + _schema_html(_ref(ErrorOut), schemas))
    out.append("<h2>schemas</h2><p>Fields marked <code>?</code> are optional.</p>")
    for name in sorted(schemas):
        out.append(f"<h3 id='{html.escape(name)}'>{html.escape(name)}</h3>")
        out.append(_schema_html({"$ref": f"#/components/schemas/{name}"}, schemas))
    out.append("</body></html>")
    return "\n".join(out)


def _schema_html(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    name = _name(schema)
    resolved = schemas.get(name, schema) if name else schema
    shown = orjson.dumps(_fields(resolved), option=orjson.OPT_INDENT_2).decode()
    title = f"<code>{html.escape(name)}</code>" if name else ""
    return f"{title}<pre>{html.escape(shown)}</pre>"


def _name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref") or next(
        (s.get("$ref") for s in schema.get("anyOf", []) if "$ref" in s), None
    )
    return ref.rsplit("/", 1)[-1] if ref else None


def _fields(schema: dict[str, Any]) -> Any:
    props = schema.get("properties")
    if not props:
        return schema.get("type", "any")
    required = set(schema.get("required", []))
    return {
        key + ("" if key in required else "?"): value.get("description")
        or value.get("type")
        or _name(value)
        or "any"
        for key, value in props.items()
    }
