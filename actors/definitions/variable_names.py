"""Workflow variables in a definition: what one may be called (a name ``${{ vars.<name> }}``
can read), the ``vars:`` mapping, and the check of ``vars.X`` references against it."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._problems import ProblemLog

__all__ = ["NAME_PATTERN", "name_problem", "read_vars", "var_problems"]

NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a variable's name, or None."""
    if not isinstance(name, str) or not _NAME.match(name):
        return (
            f"{name!r} is not a variable name (letters, digits and _, not starting with a digit, "
            "so that ${{ vars.NAME }} can read it)"
        )
    return None


# --- workflow variables (``vars:``, ``${{ vars.KEY }}``) ---


def read_vars(value: object, log: ProblemLog) -> dict[str, Any]:
    """The ``vars:`` mapping: names an expression can read, each with a JSON value."""
    if not isinstance(value, Mapping):
        log.add(
            ("vars",), f"expected a mapping of variable names to values, got {f.describe(value)}"
        )
        return {}
    declared: dict[str, Any] = {}
    for name, item in value.items():
        problem = name_problem(name)
        if problem is not None:
            log.add(("vars", str(name)), problem)
            continue
        declared[name] = f.json_value(item, ("vars", name), log)
    return declared


def var_problems(paths: set[tuple[str, ...]], declared: Collection[str] | None) -> list[str]:
    # Without ``vars:``, every name may be set at run time (``jetwork set``): nothing to check.
    if declared is None:
        return []
    return [
        f"vars.{path[1]}: no such variable{f.did_you_mean(path[1], declared)}; "
        f"declared: {', '.join(declared) or 'none'} (`jetwork set` may add more, but a workflow "
        "declaring vars: names every variable it reads)"
        for path in sorted(paths)
        if path[0] == "vars" and len(path) == 2 and path[1] not in declared
    ]
