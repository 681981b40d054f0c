"""What ``Client.start`` accepts as a workflow, validated locally before anything is sent.

A start request carries the definition as a plain mapping (the engine validates it again). The
client always sends the mapping of the *validated* definition, whatever it was given: a path, a
``WorkflowDefinition``, a builder ``Workflow`` or a raw mapping. So what travels is plain JSON,
and parsing it gives back exactly the definition the user saw validated here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from actors.definitions import load_workflow_file, parse_workflow, validate_inputs
from actors.definitions.mapping import definition_mapping
from events.definition import WorkflowDefinition
from sdk.builder import Workflow

__all__ = ["WorkflowSource", "checked_inputs", "definition_mapping", "resolve_definition"]

WorkflowSource = str | os.PathLike[str] | WorkflowDefinition | Workflow | Mapping[str, Any]
"""A workflow file's path, a validated definition, a builder, or a raw mapping (as from YAML)."""


def resolve_definition(source: WorkflowSource) -> WorkflowDefinition:
    """The validated definition of ``source``; raises ``InvalidWorkflow`` listing every problem."""
    if isinstance(source, WorkflowDefinition):
        return source
    if isinstance(source, Workflow):
        return source.build()
    if isinstance(source, str | os.PathLike):
        return load_workflow_file(Path(source))
    if isinstance(source, Mapping):
        return parse_workflow(source)
    raise TypeError(
        "start() takes a workflow file path, a WorkflowDefinition, a builder Workflow or a "
        f"mapping, not {type(source).__name__}"
    )


def checked_inputs(definition: WorkflowDefinition, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` plus defaults; raises ``InvalidWorkflow`` naming unknown and missing inputs."""
    return validate_inputs(definition, given)
