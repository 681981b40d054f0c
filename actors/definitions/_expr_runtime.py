"""What GitHub-flavoured expressions mean at run time: truthiness, loose comparison, functions.

Following GitHub Actions: ``null``, ``false``, ``0``, ``NaN`` and ``''`` are falsy and everything
else (objects and arrays included) is truthy; ``&&``/``||`` return one of their operands; values of
different types are compared as numbers; strings compare without regard to case; looking up a
missing property yields ``null`` instead of failing.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from simpleeval import SimpleEval

from actors.definitions._expr_tokens import ExpressionError

_NUMERIC_TEXT: Final = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")
_HEX_TEXT: Final = re.compile(r"^\s*0x[0-9a-fA-F]+\s*$")
_FORMAT_ITEM: Final = re.compile(r"\{\{|\}\}|\{(\d+)\}|[{}]")


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, int | float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def to_text(value: Any) -> str:
    """How a value appears when substituted into a string (``null`` becomes ``''``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def to_number(value: Any) -> float:
    kind = _kind(value)
    if kind == "null":
        return 0.0
    if kind in ("boolean", "number"):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if kind == "string":
        if value.strip() == "":
            return 0.0
        if _HEX_TEXT.match(value):
            return float(int(value, 16))
        if _NUMERIC_TEXT.match(value):
            return float(value)
    return math.nan


def loose_equal(left: Any, right: Any) -> bool:
    left_kind, right_kind = _kind(left), _kind(right)
    if left_kind != right_kind:
        if "object" in (left_kind, right_kind):
            return False
        return to_number(left) == to_number(right)
    if left_kind == "string":
        return bool(left.casefold() == right.casefold())
    if left_kind == "object":
        return left is right
    return bool(left == right)


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def ordered(left: Any, right: Any) -> bool:
        left_kind, right_kind = _kind(left), _kind(right)
        if "object" in (left_kind, right_kind):
            return False
        if left_kind == right_kind == "string":
            return compare(left.casefold(), right.casefold())
        # NaN compares false with everything, as in GitHub.
        return compare(to_number(left), to_number(right))

    return ordered


OPERATORS: Final[dict[type[ast.AST], Callable[..., Any]]] = {
    ast.Eq: loose_equal,
    ast.NotEq: lambda left, right: not loose_equal(left, right),
    ast.Lt: _ordering(operator.lt),
    ast.LtE: _ordering(operator.le),
    ast.Gt: _ordering(operator.gt),
    ast.GtE: _ordering(operator.ge),
    ast.Not: lambda value: not truthy(value),
    ast.USub: operator.neg,  # only ever applied to a number literal by the parser
}


def lookup(container: Any, key: Any) -> Any:
    """``container[key]`` the GitHub way: ``null`` when absent, names matched case-blind."""
    if isinstance(container, Mapping):
        return _lookup_mapping(container, key)
    if isinstance(container, Sequence) and not isinstance(container, str | bytes):
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(container):
            return container[key]
    return None


def _lookup_mapping(container: Mapping[Any, Any], key: Any) -> Any:
    try:
        if key in container:
            return container[key]
    except TypeError:  # an unhashable key such as an array
        return None
    if isinstance(key, str):
        folded = key.casefold()
        for name, value in container.items():
            if isinstance(name, str) and name.casefold() == folded:
                return value
    return None


def _contains(search: Any, item: Any) -> bool:
    if isinstance(search, Sequence) and not isinstance(search, str | bytes):
        return any(loose_equal(element, item) for element in search)
    if isinstance(search, Mapping):
        return False
    return to_text(item).casefold() in to_text(search).casefold()


def _starts_with(text: Any, prefix: Any) -> bool:
    return to_text(text).casefold().startswith(to_text(prefix).casefold())


def _ends_with(text: Any, suffix: Any) -> bool:
    return to_text(text).casefold().endswith(to_text(suffix).casefold())


def _format(template: Any, *arguments: Any) -> str:
    text = to_text(template)

    def replace(match: re.Match[str]) -> str:
        token = match.group()
        if token in ("{{", "}}"):
            return token[0]
        index = match.group(1)
        if index is None or int(index) >= len(arguments):
            raise ExpressionError(
                f"format(): {token!r} in {text!r} does not name one of the "
                f"{len(arguments)} argument(s); use {{0}}, {{1}}, ... and {{{{ }}}} for braces"
            )
        return to_text(arguments[int(index)])

    return _FORMAT_ITEM.sub(replace, text)


def _join(items: Any, separator: Any = ",") -> str:
    if isinstance(items, Sequence) and not isinstance(items, str | bytes):
        return to_text(separator).join(to_text(item) for item in items)
    return to_text(items)


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, indent=2)


def _from_json(text: Any) -> Any:
    try:
        return json.loads(to_text(text))
    except ValueError as error:
        raise ExpressionError(f"fromJSON(): {to_text(text)[:80]!r} is not JSON: {error}") from None


def functions(*, success: bool, failure: bool, cancelled: bool) -> dict[str, Callable[..., Any]]:
    """The callable functions, with the status functions bound to one job's situation."""
    return {
        "success": lambda: success,
        "failure": lambda: failure,
        "always": lambda: True,
        "cancelled": lambda: cancelled,
        "contains": _contains,
        "startsWith": _starts_with,
        "endsWith": _ends_with,
        "format": _format,
        "join": _join,
        "toJSON": _to_json,
        "fromJSON": _from_json,
    }


class Evaluator(SimpleEval):  # type: ignore[misc]  # simpleeval ships without type hints
    """simpleeval with GitHub's lookups and boolean operators; attribute access is never emitted."""

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        return lookup(self._eval(node.value), self._eval(node.slice))

    def _eval_boolop(self, node: ast.BoolOp) -> Any:
        # Python's own truthiness would call `{}` and `[]` falsy; GitHub calls them truthy.
        stop_when = not isinstance(node.op, ast.And)
        result: Any = None
        for value in node.values:
            result = self._eval(value)
            if truthy(result) is stop_when:
                break
        return result
