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
from events.definition import JobDefinition, RetryPolicy, WorkflowDefinition
from sdk.builder import Workflow

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


def definition_mapping(definition: WorkflowDefinition) -> dict[str, Any]:
    """The plain, JSON-ready mapping that parses back to ``definition`` (as a YAML file would).

    Only what differs from "absent" is written: empty lists and maps, unset options and default
    policies are left out, so the mapping reads like a hand-written file.
    """
    raw: dict[str, Any] = {"name": definition.name}
    if definition.inputs:
        raw["inputs"] = {
            name: spec.model_dump(mode="json", exclude_defaults=True)
            for name, spec in definition.inputs.items()
        }
    if definition.env:
        raw["env"] = dict(definition.env)
    for key in ("timeout", "dispatch_timeout"):
        if getattr(definition, key) is not None:
            raw[key] = getattr(definition, key)
    raw["jobs"] = {name: _job_mapping(job) for name, job in definition.jobs.items()}
    return raw


def _job_mapping(job: JobDefinition) -> dict[str, Any]:
    dumped = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw: dict[str, Any] = {}
    for key in ("run", "uses", "if", "timeout", "dispatch_timeout", "delay", "at"):
        if key in dumped:
            raw[key] = dumped[key]
    for key in ("with", "labels", "needs", "needs_any", "env"):
        if dumped.get(key):
            raw[key] = dumped[key]
    if job.retry != RetryPolicy():
        raw["retry"] = _retry_mapping(job.retry)
    if job.on_failure != JobDefinition.model_fields["on_failure"].default:
        raw["on_failure"] = job.on_failure.value
    return raw


def _retry_mapping(policy: RetryPolicy) -> dict[str, Any]:
    raw: dict[str, Any] = {"max_attempts": policy.max_attempts, "backoff": policy.backoff.value}
    if policy.delay:
        raw["delay"] = policy.delay
    if policy.max_delay is not None:
        raw["max_delay"] = policy.max_delay
    return raw
