"""``workflow: NAME[@VERSION]``: a registered definition, looked up when the parent starts
(``actors.definitions.named``) and pinned in what the parent records. Given these registered
definitions, when a parent naming them is resolved, then it embeds exactly these versions, or
these located problems are refused. The registry is the injected lookup (an in-memory stand-in:
the integration tests read the real KV bucket)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.definitions import load_workflow_file, load_workflow_text, parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.definitions.named import resolve_names
from actors.engine.definition_cache import DefinitionCache
from events.definition import WorkflowDefinition
from events.definition_refs import is_file_reference
from events.definition_store import DefinitionNotFound
from events.errors import InvalidWorkflow
from sdk.builder import Workflow


class Registry:
    """Registered definitions, as ``DefinitionStore.get`` answers (same messages)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[WorkflowDefinition]] = {}
        self.lookups = 0

    def register(self, raw: dict[str, Any]) -> WorkflowDefinition:
        listed = self.versions.setdefault(raw["name"], [])
        definition = parse_workflow({**raw, "version": len(listed) + 1})
        listed.append(definition)
        return definition

    async def fetch(self, name: str, version: int | None) -> WorkflowDefinition:
        self.lookups += 1
        listed = self.versions.get(name, [])
        if not listed:
            raise DefinitionNotFound(f"no definition named {name!r} is registered")
        if version is None:
            return listed[-1]
        if version > len(listed):
            known = ", ".join(str(v) for v in range(1, len(listed) + 1))
            raise DefinitionNotFound(f"{name}@{version} is not registered (registered: {known})")
        return listed[version - 1]


def leaf(name: str, word: str = "hi") -> dict[str, Any]:
    return {"name": name, "jobs": {"a": {"run": f"echo {word}"}}}


def naming(name: str, *refs: str) -> dict[str, Any]:
    jobs: dict[str, Any] = {"first": {"run": "true"}}
    for index, ref in enumerate(refs):
        jobs[f"sub{index}"] = {"workflow": ref}
    return {"name": name, "jobs": jobs}


def resolve(registry: Registry, raw: dict[str, Any]) -> WorkflowDefinition:
    return asyncio.run(resolve_names(parse_workflow(raw), registry.fetch))


def refused(registry: Registry, raw: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        resolve(registry, raw)
    return caught.value.problems


def test_a_name_runs_its_latest_version_pinned_in_the_job_and_the_embedded_child() -> None:
    registry = Registry()
    registry.register(leaf("deploy", "one"))
    registry.register(leaf("deploy", "two"))
    resolved = resolve(registry, naming("parent", "deploy"))
    assert resolved.jobs["sub0"].workflow == "deploy@2"
    assert list(resolved.workflows) == ["deploy@2"]
    assert resolved.workflows["deploy@2"].jobs["a"].run == "echo two"
    assert resolved.workflows["deploy@2"].version == 2
    # What the start request carries parses back to itself, with no registry around.
    assert parse_workflow(definition_mapping(resolved)) == resolved


def test_a_version_runs_that_version_and_a_later_registration_changes_nothing_resolved() -> None:
    registry = Registry()
    registry.register(leaf("deploy", "one"))
    registry.register(leaf("deploy", "two"))
    resolved = resolve(registry, naming("parent", "deploy@1"))
    registry.register(leaf("deploy", "three"))
    assert resolved.jobs["sub0"].workflow == "deploy@1"
    assert resolved.workflows["deploy@1"].jobs["a"].run == "echo one"


def test_every_job_naming_one_definition_runs_the_same_version_looked_up_once() -> None:
    registry = Registry()
    registry.register(leaf("deploy"))
    resolved = resolve(registry, naming("parent", "deploy", "deploy"))
    assert resolved.jobs["sub0"].workflow == resolved.jobs["sub1"].workflow == "deploy@1"
    assert registry.lookups == 1


def test_registered_children_naming_others_are_resolved_and_pinned_at_every_level() -> None:
    registry = Registry()
    registry.register(leaf("notify"))
    registry.register(naming("deploy", "notify"))
    resolved = resolve(registry, naming("parent", "deploy"))
    child = resolved.workflows["deploy@1"]
    assert child.jobs["sub0"].workflow == "notify@1"
    assert child.workflows["notify@1"].name == "notify"


def test_an_unknown_name_or_version_is_refused_at_the_job_and_key_that_names_it() -> None:
    registry = Registry()
    registry.register(leaf("deploy"))
    assert refused(registry, naming("parent", "deplo", "deploy@4")) == [
        "jobs.sub0.workflow: no definition named 'deplo' is registered (jetwork definitions "
        "register FILE registers it; list shows them)",
        "jobs.sub1.workflow: deploy@4 is not registered (registered: 1) (jetwork definitions "
        "register FILE registers it; list shows them)",
    ]


def test_a_problem_in_a_registered_child_is_located_through_the_chain() -> None:
    registry = Registry()
    registry.register(naming("deploy", "gone"))
    [problem] = refused(registry, naming("parent", "deploy"))
    assert problem.startswith("jobs.sub0.workflow: in deploy@1: jobs.sub0.workflow: no definition")


def test_a_definition_running_itself_through_names_is_refused_naming_the_cycle() -> None:
    registry = Registry()
    registry.register(naming("b", "a"))  # a is not registered yet: b registers fine
    registry.register(naming("a", "b"))
    [problem] = refused(registry, naming("a", "b"))
    assert problem == (
        "jobs.sub0.workflow: in b@1: jobs.sub0.workflow: a runs itself through registered "
        "names: a -> b -> a"
    )


def test_a_definition_naming_itself_is_refused_when_it_is_read() -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(naming("deploy", "deploy@2"))
    assert caught.value.problems == [
        "jobs.sub0.workflow: deploy@2 is this workflow's own name: a workflow cannot run itself"
    ]


def test_names_nesting_beyond_five_levels_are_refused() -> None:
    registry = Registry()
    registry.register(leaf("l6"))
    for level in range(5, 0, -1):
        registry.register(naming(f"l{level}", f"l{level + 1}"))
    resolve(registry, naming("l1-root", "l2"))  # five levels below the root are fine
    problems = refused(registry, naming("l0", "l1"))
    assert len(problems) == 1 and problems[0].endswith("nest more than 5 levels deep here")


def test_a_path_is_a_file_and_anything_else_a_name() -> None:
    assert is_file_reference("./child.yaml") and is_file_reference("child.yml")
    assert is_file_reference("lib/child") and is_file_reference("../up.yaml")
    assert not is_file_reference("child") and not is_file_reference("deploy@3")
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(naming("parent", "not a name!"))
    assert caught.value.problems == [
        "jobs.sub0.workflow: 'not a name!' is neither a file (a path ending in .yaml or .yml, or "
        "holding a /) nor a registered definition's NAME or NAME@VERSION"
    ]


def test_a_file_names_a_registered_definition_without_reading_a_file_of_that_name(
    tmp_path: Path,
) -> None:
    (tmp_path / "deploy").write_text("not: yaml: at all")  # a file named so is not read
    (tmp_path / "child.yaml").write_text(
        "name: child\njobs:\n  a:\n    run: 'true'\n  b:\n    workflow: deploy\n"
    )
    (tmp_path / "p.yaml").write_text(
        "name: p\njobs:\n  s:\n    workflow: ./child.yaml\n  t:\n    workflow: deploy@1\n"
    )
    loaded = load_workflow_file(tmp_path / "p.yaml")
    assert list(loaded.workflows) == ["./child.yaml"]  # names wait for the start
    registry = Registry()
    registry.register(leaf("deploy"))
    resolved = asyncio.run(resolve_names(loaded, registry.fetch))
    assert resolved.jobs["t"].workflow == "deploy@1"
    assert resolved.workflows["./child.yaml"].jobs["b"].workflow == "deploy@1"


def test_the_engine_refuses_a_definition_that_still_names_a_registered_one() -> None:
    raw = definition_mapping(load_workflow_text(
        "name: p\njobs:\n  s:\n    workflow: deploy\n", source="p.yaml"
    ))  # fmt: skip
    with pytest.raises(InvalidWorkflow) as caught:
        DefinitionCache().parse(raw, source="wf-1")
    [problem] = caught.value.problems
    assert problem.startswith("jobs.s.workflow: 'deploy' names a registered definition that was")


def test_the_builder_keeps_a_name_for_the_start_to_resolve() -> None:
    parent = Workflow("parent")
    parent.job("ship", workflow="deploy@2", with_={"env": "prod"})
    built = parent.build()
    assert built.jobs["ship"].workflow == "deploy@2" and not built.workflows
    registry = Registry()
    registry.register({**leaf("deploy"), "inputs": {"env": {}}})
    registry.register({**leaf("deploy", "two"), "inputs": {"env": {}}})
    assert asyncio.run(resolve_names(built, registry.fetch)).workflows["deploy@2"].version == 2
