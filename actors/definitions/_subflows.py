"""Reading ``workflow:`` (a sub-workflow) and ``loop:`` on jobs, the workflow's ``outputs`` and
its embedded ``workflows``, logging every problem with its location; and embedding the files
that ``workflow:`` names (``embed_files``: the CLI and client read them, the engine never does).

A ``workflow:`` job names a child definition by reference: a file's path as written (relative to
the file that holds it: a reference ending in ``.yaml``/``.yml`` or holding a ``/``), or a
registered definition's ``NAME[@VERSION]`` (``events.definition_refs``). The start embeds each
child in the parent's ``workflows`` (and each grandchild in its child's), so that the recorded
definition is self-contained: files are read by ``embed_files``, names looked up by
``actors.definitions.named`` (which pins the version). A definition as written may leave a name
unresolved; the engine refuses one that still does (``unresolved``). A file that includes itself,
directly or not, is refused; nesting is bounded by ``MAX_DEPTH``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._jobs import Expression, JobDraft
from actors.definitions._problems import Path, ProblemLog, format_path
from events.definition import WorkflowDefinition
from events.definition_refs import is_file_reference, parse_reference
from events.errors import InvalidWorkflow

MAX_DEPTH: Final = 5
"""How many levels of sub-workflows a workflow may hold (a parent with a child is 1)."""
LOOP_FIELDS: Final = ("until", "max_iterations")
# What a ``workflow:`` job does not take: a worker runs none of it.
_WORKER_ONLY: Final = (
    "run",
    "uses",
    "labels",
    "timeout",
    "dispatch_timeout",
    "delay",
    "at",
    "rate_limit",
    "concurrency",
    "priority",
)


def read_subflow(body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """``workflow`` and ``loop`` of one job into ``draft``."""
    ref = body.get("workflow")
    if ref is not None and f.text(ref, (*path, "workflow"), log, what="workflow") is not None:
        draft.fields["workflow"] = ref
        for key in _WORKER_ONLY:
            if body.get(key) is not None:
                log.add((*path, key), f"a workflow job runs a sub-workflow: {key} does not apply")
    if body.get("loop") is not None:
        _read_loop(body["loop"], (*path, "loop"), draft, log)


def _read_loop(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping with until and max_iterations, got {f.describe(value)}")
        return
    f.check_fields(value, path, LOOP_FIELDS, log)
    until, most = value.get("until"), value.get("max_iterations")
    if until is None:
        log.add(
            path, "missing until: the condition that ends the loop, e.g. outputs.done == 'true'"
        )
    elif f.text(until, (*path, "until"), log, what="until") is not None:
        draft.expressions.append(Expression((*path, "until"), until, is_condition=True))
    if most is None:
        log.add(path, "missing max_iterations: a loop needs a bound, e.g. max_iterations: 20")
    elif isinstance(most, bool) or not isinstance(most, int) or most < 1:
        log.add((*path, "max_iterations"), f"must be a whole number >= 1, got {f.short(most)}")
    if (
        isinstance(until, str)
        and isinstance(most, int)
        and not isinstance(most, bool)
        and most >= 1
    ):
        draft.fields["loop"] = {"until": until, "max_iterations": most}


def check_scoped_names(jobs: Mapping[str, JobDraft], log: ProblemLog) -> None:
    """``loop.`` only in a ``loop:`` job; ``outputs.`` only in its ``until``."""
    from actors.definitions._references import _readable_paths

    for draft in jobs.values():
        looping = "loop" in draft.fields
        for expression in draft.expressions:
            in_until = expression.path[-2:] == ("loop", "until")
            scratch = ProblemLog()
            roots = {p[0] for p in _readable_paths(expression, scratch)}
            if "loop" in roots and not looping:
                log.add(expression.path, "loop.iteration is only set in a job with loop:")
            if "outputs" in roots and not in_until:
                log.add(expression.path, "outputs.<key> is only readable in loop.until")


def read_workflows(
    value: object,
    jobs: Mapping[str, JobDraft],
    log: ProblemLog,
    parse: Callable[..., Any],
    own_name: str | None = None,
) -> dict[str, WorkflowDefinition]:
    """The embedded child definitions, each validated; every file ``workflow:`` must name one
    (a registered name may wait for the start to resolve it)."""
    children: dict[str, WorkflowDefinition] = {}
    if value is not None and not isinstance(value, Mapping):
        log.add(
            ("workflows",),
            f"expected a mapping of references to definitions, got {f.describe(value)}",
        )
        value = None
    for ref, raw in (value or {}).items():
        try:
            child = parse(raw, source=str(ref))
        except InvalidWorkflow as error:
            for problem in error.problems:
                log.add(("workflows", ref), problem)
            continue
        depth = nesting(child) + 1
        if depth > MAX_DEPTH:
            log.add(
                ("workflows", ref),
                f"sub-workflows nest {depth} levels deep below this workflow; at most {MAX_DEPTH}",
            )
            continue
        children[str(ref)] = child
    for name, draft in jobs.items():
        ref = draft.fields.get("workflow")
        if ref is not None and ref not in children and not log:
            _check_reference(ref, ("jobs", name, "workflow"), own_name, log)
    return children


def _check_reference(ref: str, where: Path, own_name: str | None, log: ProblemLog) -> None:
    """A ``workflow:`` reference nothing embeds: a name to resolve at the start, or a problem."""
    if is_file_reference(ref):
        log.add(
            where,
            f"{ref!r} is not embedded: start the workflow from its file (jetwork run, "
            "Client.start), which reads the sub-workflow's file, or embed it in workflows:",
        )
        return
    parsed = parse_reference(ref)
    if parsed is None:
        log.add(
            where,
            f"{ref!r} is neither a file (a path ending in .yaml or .yml, or holding a /) nor a "
            "registered definition's NAME or NAME@VERSION",
        )
    elif parsed[0] == own_name:
        log.add(where, f"{ref} is this workflow's own name: a workflow cannot run itself")


def unresolved(definition: WorkflowDefinition, prefix: str = "") -> list[str]:
    """Every ``workflow:`` that names a registered definition not embedded yet, located: what
    the engine refuses (the start resolves names: it reads the registry, the engine never)."""
    problems: list[str] = []
    for name, job in definition.jobs.items():
        ref = job.workflow
        if ref is None:
            continue
        child = definition.workflows.get(ref)
        if child is None:
            problems.append(
                f"{prefix}jobs.{name}.workflow: {ref!r} names a registered definition that was "
                "not resolved: start the workflow with jetwork run, Client.start or POST "
                "/api/workflows, which look it up and pin its version, or embed it in workflows:"
            )
        else:
            problems += unresolved(child, f"{prefix}jobs.{name}.workflow: in {ref}: ")
    return problems


def nesting(definition: WorkflowDefinition) -> int:
    """How many levels of sub-workflows ``definition`` holds (0: none)."""
    return max((nesting(child) + 1 for child in definition.workflows.values()), default=0)


def read_outputs(value: object, log: ProblemLog) -> tuple[dict[str, str], list[Expression]]:
    """``outputs: {NAME: "${{ needs.<job>.outputs.<key> }}"}``: the workflow's result."""
    if not isinstance(value, Mapping):
        log.add(
            ("outputs",),
            f"expected a mapping of output names to templates, got {f.describe(value)}",
        )
        return {}, []
    outputs: dict[str, str] = {}
    expressions: list[Expression] = []
    for name, template in value.items():
        where: Path = ("outputs", name)
        if f.token(name, where, log, what="output name") is None:
            continue
        if f.text(template, where, log, what="output") is None:
            continue
        outputs[name] = template
        expressions.append(Expression(where, template, is_condition=False))
    return outputs, expressions


def check_outputs(
    expressions: list[Expression], jobs: Mapping[str, JobDraft], log: ProblemLog
) -> None:
    from actors.definitions._references import _readable_paths

    for expression in expressions:
        for path in sorted(_readable_paths(expression, log)):
            if path[0] == "needs" and len(path) == 2 and path[1] not in jobs:
                log.add(
                    expression.path, f"needs.{path[1]}: no such job{f.did_you_mean(path[1], jobs)}"
                )
            elif path[0] in ("loop", "outputs"):
                log.add(expression.path, f"{path[0]} is not readable in the workflow's outputs")


# --- embedding files (client side) ------------------------------------------------------------


def embed_files(
    raw: object,
    source: str,
    log: ProblemLog,
    load: Callable[[str, tuple[str, ...]], WorkflowDefinition],
    mapping: Callable[[WorkflowDefinition], dict[str, Any]],
    chain: tuple[str, ...] = (),
) -> None:
    """Read the file each ``workflow:`` job names (relative to ``source``) into ``raw``'s
    ``workflows``; ``chain``: the files that include this one, outermost first."""
    if not isinstance(raw, dict) or not isinstance(raw.get("jobs"), Mapping):
        return
    here = os.path.realpath(source)
    chain = (*chain, here)
    given = raw.get("workflows")
    embedded: dict[str, Any] = given if isinstance(given, dict) else {}
    for name, body in raw["jobs"].items():
        ref = body.get("workflow") if isinstance(body, Mapping) else None
        if not isinstance(ref, str) or ref in embedded or not is_file_reference(ref):
            continue  # (a name is looked up in the registry at the start: ``named``)
        where: Path = ("jobs", name, "workflow")
        target = os.path.realpath(os.path.join(os.path.dirname(source), ref))
        if target in chain:
            loop = [os.path.basename(p) for p in chain[chain.index(target) :]]
            log.add(
                where, f"{ref} includes itself: {' -> '.join([*loop, os.path.basename(target)])}"
            )
            continue
        if len(chain) > MAX_DEPTH:
            log.add(where, f"sub-workflows nest more than {MAX_DEPTH} levels deep here")
            continue
        try:
            child = load(os.path.join(os.path.dirname(source), ref), chain)
        except InvalidWorkflow as error:
            for problem in error.problems:
                log.add(where, f"in {ref}: {problem}")
            continue
        embedded[ref] = mapping(child)
    if embedded:
        raw["workflows"] = embedded


__all__ = [
    "MAX_DEPTH",
    "check_outputs",
    "check_scoped_names",
    "embed_files",
    "format_path",
    "nesting",
    "read_outputs",
    "read_subflow",
    "read_workflows",
    "unresolved",
]
