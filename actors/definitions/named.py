"""Resolving ``workflow: NAME[@VERSION]``: the registered definitions a workflow's jobs name,
looked up when the parent is started and embedded, pinned, in its definition.

A job's ``workflow: deploy`` becomes ``workflow: deploy@3`` (the latest version at the start;
``deploy@2`` stays itself) and the parent's ``workflows`` gains ``deploy@3``: the definition the
run records says which version each child runs, and registering a newer version later changes
no run that started before. Children are resolved too (a registered definition may name others;
a file child may name one), each name looked up once per start, so two jobs naming ``deploy``
run the same version.

Refused, each problem located at the job that names it (``jobs.ship.workflow: ...``): a name or
version that is not registered, a definition that runs itself through names (``a -> b -> a``,
whatever the versions) and nesting deeper than ``MAX_DEPTH``. The lookup is passed in
(``fetch``): the clients and the schedule ticker read the registry, the engine never does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors.definitions._subflows import MAX_DEPTH
from actors.definitions.mapping import definition_mapping
from actors.definitions.validate import parse_workflow
from events.definition import WorkflowDefinition
from events.definition_refs import is_file_reference, parse_reference
from events.definition_store import DefinitionNotFound
from events.errors import InvalidWorkflow

__all__ = ["Fetch", "names_anywhere", "resolve_names"]

Fetch = Callable[[str, int | None], Awaitable[WorkflowDefinition]]
"""``fetch(name, version)``: the registered definition (``version`` None: the latest), its
``version`` set; raises ``DefinitionNotFound``."""


def names_anywhere(definition: WorkflowDefinition) -> bool:
    """Whether some ``workflow:`` (at any depth) names a definition not embedded yet."""
    for job in definition.jobs.values():
        if job.workflow is None:
            continue
        child = definition.workflows.get(job.workflow)
        if child is None or names_anywhere(child):
            return True
    return False


async def resolve_names(definition: WorkflowDefinition, fetch: Fetch) -> WorkflowDefinition:
    """``definition`` with every registered definition its jobs name embedded and pinned.

    Raises ``InvalidWorkflow`` listing every problem, located."""
    if not names_anywhere(definition):
        return definition
    fetched: dict[tuple[str, int | None], WorkflowDefinition] = {}

    async def once(name: str, version: int | None) -> WorkflowDefinition:
        if (name, version) not in fetched:
            fetched[(name, version)] = await fetch(name, version)
        return fetched[(name, version)]

    raw = await _resolve(definition, once, (definition.name,))
    return parse_workflow(raw, source=definition.name)


async def _resolve(
    definition: WorkflowDefinition, fetch: Fetch, chain: tuple[str, ...]
) -> dict[str, Any]:
    """``definition``'s mapping, resolved; ``chain``: the names from the root down to it."""
    raw = definition_mapping(definition)
    workflows: dict[str, Any] = dict(raw.get("workflows", {}))
    pinned: dict[str, str] = {}  # reference as written -> the key it is embedded under
    problems: list[str] = []
    for job_name, job in definition.jobs.items():
        ref = job.workflow
        if ref is None:
            continue
        where = f"jobs.{job_name}.workflow"
        if ref not in pinned:
            try:
                pinned[ref] = await _child(definition, ref, fetch, chain, workflows)
            except InvalidWorkflow as error:
                problems += [f"{where}: {problem}" for problem in error.problems]
                pinned[ref] = ref  # (reported once per job naming it)
                continue
        raw["jobs"][job_name]["workflow"] = pinned[ref]
    if problems:
        raise InvalidWorkflow(problems, source=definition.name)
    if workflows:
        raw["workflows"] = workflows
    return raw


async def _child(
    definition: WorkflowDefinition,
    ref: str,
    fetch: Fetch,
    chain: tuple[str, ...],
    workflows: dict[str, Any],
) -> str:
    """Embed what ``ref`` names into ``workflows``; the key it is embedded under."""
    embedded = definition.workflows.get(ref)
    if embedded is not None:  # a file (or a builder's child): its own names may need resolving
        workflows[ref] = await _nested(embedded, ref, fetch, (*chain, embedded.name))
        return ref
    parsed = parse_reference(ref)
    if parsed is None or is_file_reference(ref):  # (validation refuses these first)
        raise InvalidWorkflow([f"{ref!r} is not embedded"])
    name, version = parsed
    if name in chain:
        cycle = " -> ".join([*chain[chain.index(name) :], name])
        raise InvalidWorkflow([f"{ref} runs itself through registered names: {cycle}"])
    if len(chain) > MAX_DEPTH:
        raise InvalidWorkflow([f"sub-workflows nest more than {MAX_DEPTH} levels deep here"])
    try:
        child = await fetch(name, version)
    except DefinitionNotFound as error:
        raise InvalidWorkflow(
            [f"{error} (jetwork definitions register FILE registers it; list shows them)"]
        ) from None
    key = f"{name}@{child.version}" if child.version is not None else ref
    workflows[key] = await _nested(child, key, fetch, (*chain, name))
    return key


async def _nested(
    child: WorkflowDefinition, key: str, fetch: Fetch, chain: tuple[str, ...]
) -> dict[str, Any]:
    try:
        return await _resolve(child, fetch, chain)
    except InvalidWorkflow as error:
        raise InvalidWorkflow([f"in {key}: {problem}" for problem in error.problems]) from None
