"""Typed workflow inputs: the JSON Schema subset an input may declare, pure.

``inputs: {count: {type: integer, minimum: 1}, tags: {type: array, items: {type: string}},
mode: {enum: [fast, safe]}}``. Supported keywords: ``type`` (``string``, ``integer``,
``number``, ``boolean``, ``array``, ``object``, ``null``, or a list of them), ``enum``,
``minimum``/``maximum``, ``minLength``/``maxLength``, ``pattern`` (a regular expression searched
in the text, as JSON Schema does), ``items`` (a schema for every element), ``minItems``/
``maxItems``, ``properties``, ``required`` and ``additionalProperties: false`` (objects).

Why not the ``jsonschema`` package: this subset is ~200 lines, has no dependency, and its
messages name the input and where inside it (``inputs.tags[1]: expected a string, got 3``), in
the words of the rest of the validation. ``check_schema`` reports a schema that is itself wrong
when the definition is validated, so that a run never meets one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson

__all__ = ["KEYWORDS", "TYPES", "check_schema", "coerce", "problems"]

Problem = tuple[tuple[object, ...], str]  # (path inside the value, message)

TYPES: Final = ("string", "integer", "number", "boolean", "array", "object", "null")
KEYWORDS: Final = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "additionalProperties",
)
_NAMES: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


# --- the schema itself ------------------------------------------------------------------------


def check_schema(schema: Mapping[str, Any], path: tuple[object, ...] = ()) -> list[Problem]:
    """Problems of ``schema`` itself (unknown keywords, wrong kinds of values), located."""
    found: list[Problem] = []
    for key, value in schema.items():
        where = (*path, key)
        if key not in KEYWORDS:
            found.append((where, f"unknown schema keyword (supported: {', '.join(KEYWORDS)})"))
            continue
        problem = _KEYWORD_CHECKS[key](value)
        if problem:
            found.append((where, problem))
        elif key == "items":
            found += check_schema(value, where)
        elif key == "properties":
            for name, sub in value.items():
                found += check_schema(sub, (*where, name))
    return found


def _type_check(value: object) -> str | None:
    names = value if isinstance(value, list) else [value]
    if not names or any(name not in TYPES for name in names):
        return f"expected one of {', '.join(TYPES)} (or a list of them), got {value!r}"
    return None


def _number_check(value: object) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return None if ok else f"expected a number, got {value!r}"


def _count_check(value: object) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else f"expected a whole number >= 0, got {value!r}"


def _pattern_check(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected a regular expression as text, got {value!r}"
    try:
        re.compile(value)
    except re.error as error:
        return f"not a regular expression: {error}"
    return None


def _enum_check(value: object) -> str | None:
    return None if isinstance(value, list) and value else "expected a non-empty list of values"


def _schema_check(value: object) -> str | None:
    return None if isinstance(value, Mapping) else "expected a schema (a mapping)"


def _properties_check(value: object) -> str | None:
    if not isinstance(value, Mapping) or not all(isinstance(s, Mapping) for s in value.values()):
        return "expected a mapping of property names to schemas"
    return None


def _required_check(value: object) -> str | None:
    ok = isinstance(value, list) and all(isinstance(name, str) for name in value)
    return None if ok else "expected a list of property names"


def _additional_check(value: object) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


_KEYWORD_CHECKS: Final[dict[str, Callable[[object], str | None]]] = {
    "type": _type_check,
    "enum": _enum_check,
    "minimum": _number_check,
    "maximum": _number_check,
    "minLength": _count_check,
    "maxLength": _count_check,
    "pattern": _pattern_check,
    "items": _schema_check,
    "minItems": _count_check,
    "maxItems": _count_check,
    "properties": _properties_check,
    "required": _required_check,
    "additionalProperties": _additional_check,
}


# --- values -------------------------------------------------------------------------------------


def problems(value: Any, schema: Mapping[str, Any], path: tuple[object, ...] = ()) -> list[Problem]:
    """Every way ``value`` breaks ``schema`` (a checked one), each with where inside the value."""
    types = _types(schema)
    if types and not any(_is(value, name) for name in types):
        wanted = " or ".join(_NAMES[name] for name in types)
        return [(path, f"expected {wanted}, got {_shown(value)}")]
    found: list[Problem] = []
    if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
        options = ", ".join(_shown(option) for option in schema["enum"])
        found.append((path, f"{_shown(value)} is not one of {options}"))
    if _is(value, "number"):
        found += _number_problems(value, schema, path)
    elif isinstance(value, str):
        found += _text_problems(value, schema, path)
    elif isinstance(value, list):
        found += _list_problems(value, schema, path)
    elif isinstance(value, Mapping):
        found += _object_problems(value, schema, path)
    return found


def _number_problems(
    value: float, schema: Mapping[str, Any], path: tuple[object, ...]
) -> list[Problem]:
    found: list[Problem] = []
    if "minimum" in schema and value < schema["minimum"]:
        found.append((path, f"{_shown(value)} is less than the minimum {schema['minimum']}"))
    if "maximum" in schema and value > schema["maximum"]:
        found.append((path, f"{_shown(value)} is more than the maximum {schema['maximum']}"))
    return found


def _text_problems(
    value: str, schema: Mapping[str, Any], path: tuple[object, ...]
) -> list[Problem]:
    found: list[Problem] = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append((path, f"{_shown(value)} is shorter than {schema['minLength']} characters"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append((path, f"{_shown(value)} is longer than {schema['maxLength']} characters"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append((path, f"{_shown(value)} does not match the pattern {schema['pattern']!r}"))
    return found


def _list_problems(
    value: Sequence[Any], schema: Mapping[str, Any], path: tuple[object, ...]
) -> list[Problem]:
    found: list[Problem] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        found.append((path, f"has {len(value)} item(s), fewer than {schema['minItems']}"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        found.append((path, f"has {len(value)} item(s), more than {schema['maxItems']}"))
    if "items" in schema:
        for index, item in enumerate(value):
            found += problems(item, schema["items"], (*path, index))
    return found


def _object_problems(
    value: Mapping[str, Any], schema: Mapping[str, Any], path: tuple[object, ...]
) -> list[Problem]:
    found: list[Problem] = []
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            found.append(((*path, name), "required property is missing"))
    for name, item in value.items():
        if name in properties:
            found += problems(item, properties[name], (*path, name))
        elif schema.get("additionalProperties") is False:
            known = ", ".join(properties) or "none"
            found.append(((*path, name), f"unknown property (known: {known})"))
    return found


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        return []
    return list(declared) if isinstance(declared, list) else [declared]


def _is(value: Any, name: str) -> bool:
    if name == "integer":
        whole_float = isinstance(value, float) and value.is_integer()
        return (isinstance(value, int) and not isinstance(value, bool)) or whole_float
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "array":
        return isinstance(value, list | tuple)
    if name == "object":
        return isinstance(value, Mapping)
    return value is None


def _equal(value: Any, option: Any) -> bool:
    # JSON Schema's equality: true and 1 differ, 1 and 1.0 do not.
    if isinstance(value, bool) or isinstance(option, bool):
        return type(value) is type(option) and value == option
    return bool(value == option)


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- text from a command line -------------------------------------------------------------------


def coerce(text: str, schema: Mapping[str, Any]) -> Any:
    """``text`` (``-i count=3``) as the type ``schema`` declares; the text itself when it does
    not read as that type (validation then says why), or as JSON when no type is declared."""
    types = _types(schema)
    if not types and "enum" in schema:
        for option in schema["enum"]:
            if text == (option if isinstance(option, str) else orjson.dumps(option).decode()):
                return option
    candidates: list[str | None] = list(types) or [None]
    for name in candidates:
        converted = _convert(text, name)
        if converted is not _NO:
            return converted
    return text


_NO: Final = object()


def _convert(text: str, name: str | None) -> Any:
    if name == "string":
        return text
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text if name is None else _NO
    if name is None or _is(value, name):
        return int(value) if name == "integer" and isinstance(value, float) else value
    return _NO
