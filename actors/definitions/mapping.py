"""A validated definition back as the plain mapping a YAML file would hold.

What a start request carries (``sdk.Client.start`` sends it, and the engine sends it for the new
run of a restart): parsing it gives back exactly the definition it was made from.
"""

from __future__ import annotations

from typing import Any

from actors.definitions._fanout import fan_out_mapping
from events.definition import JobDefinition, RetryPolicy, WorkflowDefinition

__all__ = ["definition_mapping"]


def definition_mapping(definition: WorkflowDefinition) -> dict[str, Any]:
    """The plain, JSON-ready mapping that parses back to ``definition`` (as a YAML file would).

    Only what differs from "absent" is written: empty lists and maps, unset options and default
    policies are left out, so the mapping reads like a hand-written file.
    """
    raw: dict[str, Any] = {"name": definition.name}
    if definition.inputs:
        raw["inputs"] = {
            name: spec.model_dump(mode="json", exclude_defaults=True, exclude={"json_schema"})
            | spec.json_schema
            for name, spec in definition.inputs.items()
        }
    if definition.env:
        raw["env"] = dict(definition.env)
    if definition.vars:
        raw["vars"] = dict(definition.vars)
    for key in ("timeout", "dispatch_timeout", "priority"):
        if getattr(definition, key) is not None:
            raw[key] = getattr(definition, key)
    raw["jobs"] = {name: _job_mapping(job) for name, job in definition.jobs.items()}
    if definition.outputs:
        raw["outputs"] = dict(definition.outputs)
    if definition.workflows:
        raw["workflows"] = {
            ref: definition_mapping(child) for ref, child in definition.workflows.items()
        }
    if definition.version is not None:
        raw["version"] = definition.version
    if definition.schedule:
        raw["schedule"] = [rule.model_dump(exclude_defaults=True) for rule in definition.schedule]
    if definition.concurrency is not None:
        raw["concurrency"] = definition.concurrency.model_dump(mode="json")
    return raw


def _job_mapping(job: JobDefinition) -> dict[str, Any]:
    dumped = job.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw: dict[str, Any] = {}
    for key in ("run", "uses", "if", "timeout", "dispatch_timeout", "delay", "at", "workflow"):
        if key in dumped:
            raw[key] = dumped[key]
    if job.priority is not None:
        raw["priority"] = job.priority
    for key in ("set", "sleep", "until", "needs_at_least"):  # actors.inline_steps, actors.quorum
        if key in dumped:
            raw[key] = dumped[key]
    for key in ("with", "labels", "needs", "needs_any", "env"):
        if dumped.get(key):
            raw[key] = dumped[key]
    if job.loop is not None:
        raw["loop"] = job.loop.model_dump(mode="json")
    if job.retry != RetryPolicy():
        raw["retry"] = _retry_mapping(job.retry)
    if job.wait_for is not None:
        raw["wait_for"] = job.wait_for.model_dump(mode="json", exclude_none=True)
    if job.on_failure != JobDefinition.model_fields["on_failure"].default:
        raw["on_failure"] = job.on_failure.value
    if job.fan_out is not None:
        raw.update(fan_out_mapping(job.fan_out))
    if job.http is not None:
        raw["http"] = job.http.model_dump(mode="json", exclude_defaults=True)
    for key in ("concurrency", "rate_limit"):
        if key in dumped:
            raw[key] = dumped[key]
    return raw


def _retry_mapping(policy: RetryPolicy) -> dict[str, Any]:
    raw: dict[str, Any] = {"max_attempts": policy.max_attempts, "backoff": policy.backoff.value}
    if policy.delay:
        raw["delay"] = policy.delay
    if policy.max_delay is not None:
        raw["max_delay"] = policy.max_delay
    return raw
