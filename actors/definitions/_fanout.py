"""Reading a job's fan-out: ``strategy: {matrix, fail_fast, max_parallel}`` and ``for_each``.

A static matrix is expanded here, once, into its list of combinations (GitHub's rules for
``include`` and ``exclude``); the definition keeps that list, so a run never re-expands it and
``definition_mapping`` writes it back as ``matrix: {include: [...]}``. ``for_each`` is kept as
its expression: it is evaluated when the job becomes ready (``actors.fanout``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._jobs import Expression, JobDraft
from actors.definitions._problems import Path, ProblemLog
from actors.definitions.expressions import referenced_paths
from actors.definitions.templating import template_expressions, template_paths
from events.definition import FanOut

__all__ = ["MAX_MATRIX", "check_fan_out", "fan_out_mapping", "read_fan_out"]

STRATEGY_FIELDS: Final = ("matrix", "fail_fast", "max_parallel")
MAX_MATRIX: Final = 10_000
# Instance names are ``<job>-<index>``: the job's name leaves room for the index (a token is at
# most 128 characters).
_MAX_FANNED_NAME: Final = 120
_SINGLE_TEMPLATE: Final = re.compile(r"^\s*\$\{\{.*\}\}\s*$", re.DOTALL)


def read_fan_out(body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """``strategy``, ``for_each``, ``max_parallel`` and ``fail_fast`` into ``fields["fan_out"]``."""
    strategy, for_each = body.get("strategy"), body.get("for_each")
    if strategy is None and for_each is None:
        for key in ("max_parallel", "fail_fast"):
            if body.get(key) is not None:
                log.add((*path, key), "only a job with strategy.matrix or for_each fans out")
        return
    # A fan-out of ``workflow:`` runs one child per instance, of ``wait_for`` one wait per
    # instance (a signal's name templated with the item), of ``loop:`` one loop per instance.
    fan_out: dict[str, Any] = {}
    options: dict[str, tuple[object, Path]] = {}
    if strategy is not None:
        spath = (*path, "strategy")
        if not isinstance(strategy, Mapping):
            log.add(spath, f"expected a mapping with matrix, got {f.describe(strategy)}")
            strategy = {}
        f.check_fields(strategy, spath, STRATEGY_FIELDS, log)
        options = {k: (strategy[k], (*spath, k)) for k in STRATEGY_FIELDS[1:] if k in strategy}
        matrix = strategy.get("matrix")
        if matrix is not None and for_each is not None:
            log.add(spath, "set strategy.matrix or for_each, not both")
        elif matrix is not None:
            items = _expand_matrix(matrix, (*spath, "matrix"), log)
            fan_out.update(items=items, is_matrix=True)
        elif for_each is None:
            log.add(spath, "strategy needs a matrix (or the job's for_each)")
    if for_each is not None and "items" not in fan_out:
        _read_for_each(for_each, (*path, "for_each"), draft, fan_out, log)
    for key in STRATEGY_FIELDS[1:]:
        if body.get(key) is not None:
            if key in options:
                log.add((*path, key), f"set {key} here or in strategy, not both")
            options[key] = (body[key], (*path, key))
    _read_options(options, fan_out, log)
    name = draft.fields["name"]
    if len(name) > _MAX_FANNED_NAME:
        log.add(path, f"a fanned-out job's name is at most {_MAX_FANNED_NAME} characters")
    draft.fields["fan_out"] = fan_out


def _read_options(
    options: Mapping[str, tuple[object, Path]], fan_out: dict[str, Any], log: ProblemLog
) -> None:
    if "fail_fast" in options:
        value, where = options["fail_fast"]
        if isinstance(value, bool):
            fan_out["fail_fast"] = value
        else:
            log.add(where, f"expected true or false, got {f.describe(value)}")
    if "max_parallel" in options:
        value, where = options["max_parallel"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            log.add(where, f"must be a whole number >= 1, got {f.short(value)}")
        else:
            fan_out["max_parallel"] = value


def _read_for_each(
    value: object, path: Path, draft: JobDraft, fan_out: dict[str, Any], log: ProblemLog
) -> None:
    if isinstance(value, list):
        fan_out["items"] = tuple(f.json_value(value, path, log))
        return
    if not isinstance(value, str) or not _SINGLE_TEMPLATE.match(value):
        log.add(
            path,
            "expected a list, or one ${{ expression }} giving a list "
            f"(e.g. ${{{{ fromJSON(needs.list.outputs.items) }}}}), got {f.short(value)}",
        )
        return
    try:
        count = len(template_expressions(value))
    except ValueError as error:
        log.add(path, str(error))
        return
    if count != 1:
        log.add(path, "expected one ${{ expression }} giving a list, nothing around it")
        return
    fan_out["for_each"] = value.strip()
    draft.expressions.append(Expression(path, value, is_condition=False))


def _expand_matrix(value: object, path: Path, log: ProblemLog) -> tuple[dict[str, Any], ...]:
    """The combinations, as GitHub forms them: the product of the dimensions, less ``exclude``,
    then each ``include`` merged into every combination it does not contradict, or added."""
    if not isinstance(value, Mapping) or not value:
        log.add(path, f"expected a mapping of dimensions to lists, got {f.describe(value)}")
        return ()
    dimensions: dict[str, list[Any]] = {}
    for key, values in value.items():
        where = (*path, key)
        if key in ("include", "exclude"):
            continue
        if f.token(key, where, log, what="matrix dimension") is None:
            continue
        if not isinstance(values, list) or not values:
            log.add(where, f"expected a non-empty list of values, got {f.describe(values)}")
            continue
        dimensions[key] = f.json_value(values, where, log)
    include = _entries(value.get("include"), (*path, "include"), log)
    exclude = _entries(value.get("exclude"), (*path, "exclude"), log)
    for index, entry in enumerate(exclude):
        for key in entry:
            if key not in dimensions:
                log.add((*path, "exclude", index, key), f"no matrix dimension {key!r}")
    combos: list[dict[str, Any]] = []
    if dimensions:
        for values in itertools.product(*dimensions.values()):
            combo = dict(zip(dimensions, values, strict=True))
            if not any(all(combo.get(k) == v for k, v in e.items()) for e in exclude):
                combos.append(combo)
    originals = len(combos)
    for entry in include:
        matched = False
        for combo in combos[:originals]:
            if all(combo[k] == v for k, v in entry.items() if k in dimensions):
                combo.update(entry)
                matched = True
        if not matched:
            combos.append(dict(entry))
    if not combos:
        log.add(path, "the matrix has no combination left (every one excluded)")
    elif len(combos) > MAX_MATRIX:
        log.add(path, f"{len(combos)} combinations; at most {MAX_MATRIX} (use for_each)")
    return tuple(combos)


def _entries(value: object, path: Path, log: ProblemLog) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        log.add(path, f"expected a list of mappings, got {f.describe(value)}")
        return []
    entries = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping) or not entry:
            log.add((*path, index), f"expected a mapping of values, got {f.describe(entry)}")
            continue
        entries.append(f.json_value(entry, (*path, index), log))
    return entries


def check_fan_out(jobs: Mapping[str, JobDraft], log: ProblemLog) -> None:
    """Names an instance would take, and ``matrix``/``item``/``index`` outside their job."""
    fanned = {name for name, draft in jobs.items() if "fan_out" in draft.fields}
    for name in jobs:
        head, _, tail = name.rpartition("-")
        if head in fanned and tail.isdigit():
            log.add(("jobs", name), f"the name is taken by an instance of {head!r}; rename it")
    for name, draft in jobs.items():
        fan_out = draft.fields.get("fan_out")
        allowed = _allowed_names(fan_out)
        for expression in draft.expressions:
            roots = {path[0] for path in _paths(expression)}
            field = expression.path[2] if len(expression.path) == 3 else None  # jobs.<j>.<field>
            for root in sorted(roots & {"matrix", "item", "index"}):
                if root not in allowed:
                    log.add(expression.path, _misplaced(root, name, fan_out))
                elif field == "for_each":
                    log.add(
                        expression.path, f"{root} is not known in for_each: it names an instance"
                    )
                elif field == "if":
                    log.add(
                        expression.path,
                        f"{root} is not known in if: the job's condition is judged once, before "
                        "it fans out",
                    )


def _allowed_names(fan_out: Mapping[str, Any] | None) -> set[str]:
    if fan_out is None:
        return set()
    return {"matrix", "index"} if fan_out.get("is_matrix") else {"item", "index"}


def _misplaced(root: str, job: str, fan_out: Mapping[str, Any] | None) -> str:
    if fan_out is None:
        return f"{root} is only known in a job with strategy.matrix or for_each; {job!r} has none"
    if root == "matrix":
        return f"matrix is only known in a job with strategy.matrix; {job!r} uses for_each (item)"
    return f"item is only known in a for_each job; {job!r} has a matrix (use matrix.<name>)"


def _paths(expression: Expression) -> set[tuple[str, ...]]:
    # An unreadable expression was reported by the reference checks already.
    try:
        if expression.is_condition:
            return referenced_paths(expression.text)
        return template_paths(expression.text)
    except ValueError:
        return set()


def fan_out_mapping(fan_out: FanOut) -> dict[str, Any]:
    """The job fields that read back as ``fan_out`` (a matrix as its combinations, included)."""
    strategy: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    if fan_out.is_matrix:
        strategy["matrix"] = {"include": list(fan_out.items or ())}
    elif fan_out.for_each is not None:
        raw["for_each"] = fan_out.for_each
    else:
        raw["for_each"] = list(fan_out.items or ())
    if not fan_out.fail_fast:
        strategy["fail_fast"] = False
    if fan_out.max_parallel is not None:
        strategy["max_parallel"] = fan_out.max_parallel
    if strategy:
        raw["strategy"] = strategy
    return raw
