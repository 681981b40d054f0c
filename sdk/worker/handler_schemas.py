"""What a worker publishes about its Python handlers: their pydantic input and output models as
JSON Schema, in its presence entry (``jetwork handlers --schema``, ``jetwork workers --json``).

``{"resize": {"input": {...JSON Schema...}, "output": {...} | null, "takes_inputs": true}}``: a
handler without an input model takes its ``with:`` as a plain mapping (``input`` null), one
without inputs takes none (``takes_inputs`` false); ``output`` is null when the handler declares
no output model.
"""

from __future__ import annotations

from typing import Any

from sdk.worker.handlers import Handler, HandlerRegistry

__all__ = ["handler_schema", "published_schemas"]

# Schemas are computed once per registry and set of names: presence is refreshed every
# heartbeat, and generating JSON Schema is not free.
_CACHE: dict[tuple[int, tuple[str, ...]], dict[str, dict[str, Any]]] = {}


def handler_schema(handler: Handler) -> dict[str, Any]:
    """One handler's published description."""
    return {
        "input": handler.input_model.model_json_schema() if handler.input_model else None,
        "output": handler.output_model.model_json_schema() if handler.output_model else None,
        "takes_inputs": handler.takes_inputs,
    }


def published_schemas(registry: HandlerRegistry) -> dict[str, dict[str, Any]]:
    """Every handler's description, by name."""
    key = (id(registry), registry.names)
    if key not in _CACHE:
        _CACHE.clear()  # one worker per process, as a rule: keep only the current registry's
        _CACHE[key] = {handler.name: _safe(handler) for handler in registry}
    return _CACHE[key]


def _safe(handler: Handler) -> dict[str, Any]:
    try:
        return handler_schema(handler)
    except Exception as error:  # a model pydantic cannot express as JSON Schema: say so
        return {
            "input": None,
            "output": None,
            "takes_inputs": handler.takes_inputs,
            "error": f"cannot describe as JSON Schema: {error}",
        }
