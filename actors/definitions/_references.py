"""Checking expressions and what they refer to: jobs in ``needs.<job>``, ``inputs.<name>``.

A job may read ``needs.<job>`` only for its *direct* upstream jobs (``needs`` and ``needs_any``),
as in GitHub: an output two hops away must be passed along by the job in between. This keeps
every data dependency visible in the DAG.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from actors.definitions import _fields as f
from actors.definitions._expr_syntax import unwrap
from actors.definitions._jobs import Expression, JobDraft
from actors.definitions._problems import ProblemLog
from actors.definitions.expressions import check_expression, referenced_paths
from actors.definitions.templating import check_template, template_paths
from actors.definitions.variable_names import var_problems as _var_problems

_NEEDS_PROPERTIES = ("result", "outputs")


def check_job_needs(jobs: Mapping[str, JobDraft], log: ProblemLog) -> None:
    """Unknown jobs, self-dependencies and jobs listed in both ``needs`` and ``needs_any``."""
    for name, draft in jobs.items():
        required = {upstream for upstream, _ in draft.needs}
        for upstream, path in draft.upstream:
            if upstream == name:
                log.add(path, f"job {name!r} cannot need itself")
            elif upstream not in jobs:
                log.add(path, f"unknown job {upstream!r}{f.did_you_mean(upstream, jobs)}")
        for upstream, path in draft.needs_any:
            if upstream in required:
                log.add(path, f"{upstream!r} is already in needs; list it in one of the two")


def check_job_expressions(
    jobs: Mapping[str, JobDraft],
    inputs: Collection[str],
    log: ProblemLog,
    *,
    declared_vars: Collection[str] | None = None,
) -> None:
    for name, draft in jobs.items():
        upstream = {job for job, _ in draft.upstream}
        for expression in draft.expressions:
            paths = _readable_paths(expression, log)
            for problem in _job_path_problems(paths, name, upstream, jobs):
                log.add(expression.path, problem)
            for problem in _input_problems(paths, inputs) + _var_problems(paths, declared_vars):
                log.add(expression.path, problem)


def check_workflow_env(
    env: Mapping[str, str],
    inputs: Collection[str],
    log: ProblemLog,
    *,
    declared_vars: Collection[str] | None = None,
) -> None:
    """Workflow ``env`` is rendered before any job has run: it may use inputs, not needs."""
    for key, value in env.items():
        check_workflow_template(
            ("env", key), value, inputs, log, what="workflow env", declared_vars=declared_vars
        )


def check_workflow_template(
    where: tuple[str, ...],
    template: str,
    inputs: Collection[str],
    log: ProblemLog,
    *,
    what: str,
    declared_vars: Collection[str] | None = None,
) -> None:
    """A workflow-level template (``env``, ``concurrency.group``) is rendered before any job
    has run: it may use inputs and variables, not needs."""
    expression = Expression(where, template, is_condition=False)
    paths = _readable_paths(expression, log)
    if any(path[0] == "needs" for path in paths):
        log.add(expression.path, f"needs is not available in {what}: no job has run yet")
    for problem in _input_problems(paths, inputs) + _var_problems(paths, declared_vars):
        log.add(expression.path, problem)


def _readable_paths(expression: Expression, log: ProblemLog) -> set[tuple[str, ...]]:
    """The member paths in ``expression``, or an empty set after logging why it is unreadable."""
    text = expression.text
    if expression.is_condition and "${{" in unwrap(text):
        log.add(expression.path, "a condition is one expression: write a && b, not ${{ a }} ...")
        return set()
    problems = check_expression(text) if expression.is_condition else check_template(text)
    for problem in problems:
        log.add(expression.path, problem)
    if problems:
        return set()
    return referenced_paths(text) if expression.is_condition else template_paths(text)


def _job_path_problems(
    paths: set[tuple[str, ...]], job: str, upstream: set[str], jobs: Collection[str]
) -> list[str]:
    problems: list[str] = []
    for path in sorted(p for p in paths if p[0] == "needs" and len(p) >= 2):
        target = path[1]
        shown = ".".join(path[:2])
        if len(path) == 2:
            if target not in jobs:
                problems.append(f"{shown}: no such job{f.did_you_mean(target, jobs)}")
            elif target not in upstream:
                problems.append(
                    f"{shown}: job {target!r} is not upstream of {job!r}; "
                    "add it to needs or needs_any"
                )
        elif len(path) == 3 and path[2] not in _NEEDS_PROPERTIES:
            problems.append(
                f"{'.'.join(path)}: unknown property {path[2]!r} (use result or outputs.<key>)"
            )
    return problems


def _input_problems(paths: set[tuple[str, ...]], inputs: Collection[str]) -> list[str]:
    return [
        f"inputs.{path[1]}: no such input{f.did_you_mean(path[1], inputs)}; "
        f"declared: {', '.join(inputs) or 'none'}"
        for path in sorted(paths)
        if path[0] == "inputs" and len(path) == 2 and path[1] not in inputs
    ]
