"""What a dry run's ``mocks`` and ``failures`` name, and the registered children it cannot read.

A name is a job of the workflow (``build``; for a fanned-out job, every one of its instances; for
a ``workflow:`` job, its whole child run as one unit) or one instance of a fanned-out job
(``test-2``), the more precise winning. A ``workflow: NAME[@V]`` naming a registered definition
cannot be read without a server: it is embedded as a stub here, so that the engine's own
decisions start it, and the dry run settles it with its mock (or as succeeding with no outputs,
and says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.definitions import parse_workflow
from actors.definitions.mapping import definition_mapping
from events.definition import WorkflowDefinition
from sdk.errors import InvalidArgument

__all__ = ["Targets", "embed_stubs"]


@dataclass(frozen=True)
class Targets:
    """The mocked outputs and the failures of one dry run, by job or instance name."""

    mocks: Mapping[str, Mapping[str, str]]
    failures: frozenset[str]

    @classmethod
    def checked(
        cls,
        definition: WorkflowDefinition,
        mocks: Mapping[str, Mapping[str, str]],
        failures: Iterable[str],
    ) -> Targets:
        """Raises ``InvalidArgument`` for a name that is neither a job nor an instance."""
        failing = frozenset(failures)
        for name in sorted(set(mocks) | failing):
            _check_name(definition, name)
        return cls(mocks=mocks, failures=failing)

    def mock_for(self, name: str, parent: str | None) -> Mapping[str, str] | None:
        """The outputs mocked for ``name`` (an instance of ``parent``, if not None)."""
        found = self.mocks.get(name)
        if found is None and parent is not None:
            found = self.mocks.get(parent)
        return found

    def fails(self, name: str, parent: str | None) -> bool:
        return name in self.failures or (parent is not None and parent in self.failures)

    def instance_names(self) -> set[str]:
        """The names given that are instances, not jobs (checked after the run: an index beyond
        a ``for_each`` list is only known once it was evaluated)."""
        return {name for name in set(self.mocks) | self.failures if _is_instance_name(name)}


def _is_instance_name(name: str) -> bool:
    head, dash, tail = name.rpartition("-")
    return bool(dash and head and tail.isdigit())


def _check_name(definition: WorkflowDefinition, name: str) -> None:
    if name in definition.jobs:
        return
    head, _, tail = name.rpartition("-")
    spec = definition.jobs.get(head)
    if spec is not None and spec.fan_out is not None and tail.isdigit():
        items = spec.fan_out.items
        if items is not None and int(tail) >= len(items):
            raise InvalidArgument(
                f"{name!r}: {head} fans out into {len(items)} instances "
                f"({head}-0 … {head}-{len(items) - 1})"
            )
        return
    known = ", ".join(definition.jobs)
    raise InvalidArgument(
        f"{name!r}: the workflow has no such job (its jobs: {known}; an instance of a fanned-out "
        "job is JOB-INDEX)"
    )


def embed_stubs(definition: WorkflowDefinition) -> tuple[WorkflowDefinition, frozenset[str]]:
    """``definition`` with a stub embedded for each registered name its jobs (at any depth) give,
    and those names. A stub takes the inputs its callers pass (their ``with:`` keys)."""
    stubbed: set[str] = set()
    raw = _with_stubs(definition, stubbed)
    if not stubbed:
        return definition, frozenset()
    return parse_workflow(raw, source=definition.name), frozenset(stubbed)


def _with_stubs(definition: WorkflowDefinition, stubbed: set[str]) -> dict[str, Any]:
    raw = definition_mapping(definition)
    workflows: dict[str, Any] = {
        ref: _with_stubs(child, stubbed) for ref, child in definition.workflows.items()
    }
    for job in definition.jobs.values():
        ref = job.workflow
        if ref is None or ref in definition.workflows:
            continue
        stubbed.add(ref)
        stub = workflows.setdefault(ref, _stub(ref))
        for key in job.with_:
            stub["inputs"].setdefault(key, {})
    if workflows:
        raw["workflows"] = workflows
    return raw


def _stub(ref: str) -> dict[str, Any]:
    name = ref.partition("@")[0]
    return {"name": name, "inputs": {}, "jobs": {"registered": {"run": "true"}}}
