"""GitHub Actions-flavoured expressions for ``if:`` conditions and ``${{ }}`` templates.

Supported: ``success()``, ``failure()``, ``always()``, ``cancelled()``, ``contains()``,
``startsWith()``, ``endsWith()``, ``format()``, ``join()``, ``toJSON()``, ``fromJSON()``;
``== != < <= > >=``, ``&& || !``, parentheses; single-quoted strings (``''`` is a quote), numbers,
``true``/``false``/``null``; ``needs.<job>.result``, ``needs.<job>.outputs.<key>``,
``inputs.<name>``, ``env.<NAME>``, ``vars.<name>`` (workflow variables), also as
``needs['job']``.

Expressions are parsed by a small parser and evaluated by simpleeval, never by ``eval``. A missing
property is ``null`` (rendered as ``''``), as in GitHub, so a run never fails on a lookup.

A condition that calls none of the status functions is implicitly ``success() && (<expr>)``, as in
GitHub: ``if: needs.build.outputs.deploy == 'yes'`` does not run after a failed upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.definitions._expr_runtime import OPERATORS, Evaluator, functions, truthy
from actors.definitions._expr_syntax import STATUS_FUNCTIONS, Compiled, compile_expression
from actors.definitions._expr_tokens import ExpressionError, shorten

__all__ = [
    "ExpressionContext",
    "ExpressionError",
    "check_expression",
    "evaluate",
    "evaluate_condition",
    "referenced_jobs",
    "referenced_paths",
    "uses_status_function",
]

# Outside a fan-out instance its names read as null (validation refuses them there).
_NO_INSTANCE: dict[str, Any] = {"matrix": None, "item": None, "index": None}

# Values of ``needs.<job>.result``, as GitHub spells them.
RESULTS = ("success", "failure", "cancelled", "skipped")


@dataclass(frozen=True)
class ExpressionContext:
    """Everything an expression can see while one job is being decided or rendered."""

    needs: Mapping[str, Mapping[str, Any]]  # job -> {"result": ..., "outputs": {key: value}}
    inputs: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)  # workflow variables
    success: bool = True  # value of success()
    failure: bool = False  # value of failure()
    cancelled: bool = False  # value of cancelled()
    # A ``loop:`` job's ``loop.iteration``, and its latest ``outputs`` (in ``loop.until``).
    loop: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    # A fan-out instance's own names: ``item`` or ``matrix``, and ``index``.
    instance: Mapping[str, Any] = field(default_factory=dict)


def evaluate(expr: str, ctx: ExpressionContext) -> Any:
    """The value of ``expr`` (bare or as ``${{ expr }}``); raises ``ExpressionError``."""
    return _run(compile_expression(expr), ctx)


def evaluate_condition(expr: str | None, ctx: ExpressionContext) -> bool:
    """Whether a job with ``if: expr`` runs. ``None`` or blank means ``success()``."""
    if expr is None or not expr.strip():
        return ctx.success
    compiled = compile_expression(expr)
    if not compiled.functions & STATUS_FUNCTIONS and not ctx.success:
        return False  # the implicit `success() &&`, short-circuited as GitHub does
    return truthy(_run(compiled, ctx))


def check_expression(expr: str) -> list[str]:
    """Syntax problems of ``expr`` (bare or wrapped), or ``[]`` when it reads fine."""
    try:
        compile_expression(expr)
    except ExpressionError as error:
        return [str(error)]
    return []


def referenced_jobs(expr: str) -> set[str]:
    """Jobs named as ``needs.<job>...`` in ``expr``; raises ``ExpressionError`` if unreadable."""
    return {path[1] for path in compile_expression(expr).references if _is_job_path(path)}


def referenced_paths(expr: str) -> set[tuple[str, ...]]:
    """Constant member paths such as ``("needs", "build", "outputs", "artifact")``, and prefixes."""
    return set(compile_expression(expr).references)


def uses_status_function(expr: str) -> bool:
    """True when ``expr`` calls ``success()``, ``failure()``, ``always()`` or ``cancelled()``."""
    return bool(compile_expression(expr).functions & STATUS_FUNCTIONS)


def _is_job_path(path: tuple[str, ...]) -> bool:
    return len(path) >= 2 and path[0] == "needs"


def _run(compiled: Compiled, ctx: ExpressionContext) -> Any:
    evaluator = Evaluator(
        operators=OPERATORS,
        functions=functions(success=ctx.success, failure=ctx.failure, cancelled=ctx.cancelled),
        names={
            "needs": ctx.needs,
            "inputs": ctx.inputs,
            "env": ctx.env,
            "vars": ctx.vars,
            "loop": ctx.loop,
            "outputs": ctx.outputs,
            **_NO_INSTANCE,
            **ctx.instance,
        },
    )
    try:
        return evaluator.eval(compiled.python, previously_parsed=compiled.tree)
    except ExpressionError:
        raise
    except Exception as error:  # user-written input: any failure is a fact about the expression
        shown = shorten(compiled.source.strip())
        raise ExpressionError(f"cannot evaluate {shown!r}: {error}") from error
