"""Turning a raw definition (from YAML or the builder) into a ``WorkflowDefinition``.

Every problem is collected before anything is raised, each prefixed by where it is
(``jobs.test.needs[0]: unknown job 'biuld'``), so one run shows everything to fix.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from actors.definitions import _fields as f
from actors.definitions import input_schema
from actors.definitions._fanout import check_fan_out, read_fan_out
from actors.definitions._graph import report_cycles
from actors.definitions._jobs import JobDraft, read_concurrency, read_job, read_priority
from actors.definitions._problems import Path, ProblemLog
from actors.definitions._references import (
    check_job_expressions,
    check_job_needs,
    check_workflow_env,
    check_workflow_template,
)
from actors.definitions._schedule import read_schedule, read_version
from actors.definitions._steps import check_output_keys, read_steps
from actors.definitions._subflows import (
    check_outputs,
    check_scoped_names,
    read_outputs,
    read_workflows,
)
from actors.definitions.variable_names import read_vars
from events.definition import InputSpec, WorkflowDefinition

__all__ = ["parse_workflow", "validate_inputs"]

WORKFLOW_FIELDS: Final = (
    "name",
    "inputs",
    "env",
    "vars",
    "timeout",
    "dispatch_timeout",
    "jobs",
    "outputs",
    "workflows",
    "concurrency",
    "priority",
)
REGISTRY_FIELDS: Final = ("version", "schedule")  # actors.definitions._schedule
# ``required`` is both the input's (true/false) and, as a list, an object's (JSON Schema's).
INPUT_FIELDS: Final = (
    "default",
    "required",
    "description",
    *(key for key in input_schema.KEYWORDS if key != "required"),
)


def parse_workflow(raw: Mapping[str, Any], *, source: str | None = None) -> WorkflowDefinition:
    """Validate ``raw`` and return the normalised definition.

    Raises ``InvalidWorkflow`` listing every problem found, each with its location.
    """
    return build_definition(raw, ProblemLog(source=source))


def build_definition(raw: object, log: ProblemLog) -> WorkflowDefinition:
    """``parse_workflow`` with a log that may already hold problems (and know file lines)."""
    if not isinstance(raw, Mapping):
        log.add((), f"expected a mapping with name and jobs, got {f.describe(raw)}")
        log.fail()
    f.check_fields(raw, (), WORKFLOW_FIELDS + REGISTRY_FIELDS, log)
    fields: dict[str, Any] = {"name": _workflow_name(raw.get("name"), log)}
    inputs = _read_inputs(raw.get("inputs"), log) if raw.get("inputs") is not None else {}
    fields["inputs"] = inputs
    # Declared variables are checked where read; without ``vars:``, any ``vars.X`` may be set.
    declared = None
    if raw.get("vars") is not None:
        fields["vars"] = read_vars(raw["vars"], log)
        declared = tuple(fields["vars"])
    if raw.get("env") is not None:
        fields["env"] = f.env_map(raw["env"], ("env",), log)
        check_workflow_env(fields["env"], inputs, log, declared_vars=declared)
    for key in ("timeout", "dispatch_timeout"):
        if raw.get(key) is not None:
            fields[key] = f.duration(raw[key], (key,), log, positive=True)
    if raw.get("concurrency") is not None:
        _read_workflow_concurrency(raw["concurrency"], fields, inputs, log, declared)
    if raw.get("priority") is not None:
        fields["priority"] = read_priority(raw["priority"], ("priority",), log)
    jobs = _read_jobs(raw.get("jobs"), inputs, log, declared)
    if raw.get("version") is not None:
        fields["version"] = read_version(raw["version"], log)
    if raw.get("schedule") is not None:
        fields["schedule"] = read_schedule(raw["schedule"], log)
    # Sub-workflows, loops and outputs (``_subflows``).
    check_scoped_names(jobs, log)
    if raw.get("outputs") is not None:
        fields["outputs"], expressions = read_outputs(raw["outputs"], log)
        check_outputs(expressions, jobs, log)
    check_output_keys(jobs, fields.get("outputs", {}), log)
    fields["workflows"] = read_workflows(
        raw.get("workflows"), jobs, log, parse_workflow, own_name=fields["name"]
    )
    log.raise_if_any()
    return _assemble(fields, jobs, log)


def _read_workflow_concurrency(
    value: object,
    fields: dict[str, Any],
    inputs: Mapping[str, Any],
    log: ProblemLog,
    declared: tuple[str, ...] | None,
) -> None:
    """The workflow's own group (``actors.groups``): rendered at the start, from inputs and
    variables only."""
    found, template = read_concurrency(value, ("concurrency",), log)
    if template is not None:
        where = ("concurrency", "group")
        what = "a workflow's concurrency group"
        check_workflow_template(where, template, inputs, log, what=what, declared_vars=declared)
    if found is not None:
        fields["concurrency"] = found


def _workflow_name(value: object, log: ProblemLog) -> str | None:
    if value is None:
        log.add(("name",), "missing: every workflow needs a name")
        return None
    return f.token(value, ("name",), log, what="workflow name")


def _read_inputs(value: object, log: ProblemLog) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        log.add(("inputs",), f"expected a mapping of input names, got {f.describe(value)}")
        return {}
    inputs: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        path: Path = ("inputs", name)
        if f.token(name, path, log, what="input name") is None:
            continue
        inputs[name] = _read_input(spec, path, log)
    return inputs


def _read_input(spec: object, path: Path, log: ProblemLog) -> dict[str, Any]:
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        log.add(
            path, f"expected a mapping with default/required/description, got {f.describe(spec)}"
        )
        return {}
    f.check_fields(spec, path, INPUT_FIELDS, log)
    result: dict[str, Any] = _read_input_schema(spec, path, log)
    if "default" in spec:
        result["default"] = f.json_value(spec["default"], (*path, "default"), log)
    required = spec.get("required", False)
    if isinstance(required, list):
        pass  # the object's required properties (the schema's), read above
    elif not isinstance(required, bool):
        log.add((*path, "required"), f"expected true or false, got {f.describe(required)}")
    elif required and spec.get("default") is not None:
        log.add(path, "required: true and a default contradict each other; drop one")
    else:
        result["required"] = required
    description = spec.get("description")
    if description is not None:
        if isinstance(description, str):
            result["description"] = description
        else:
            log.add((*path, "description"), f"expected text, got {f.describe(description)}")
    return result


def _read_input_schema(spec: Mapping[str, Any], path: Path, log: ProblemLog) -> dict[str, Any]:
    """The input's JSON Schema keywords, checked; its default checked against them."""
    # ``required: true`` is the input's own; a list names an object's required properties.
    schema = {
        key: f.json_value(spec[key], (*path, key), log)
        for key in input_schema.KEYWORDS
        if key in spec and not (key == "required" and not isinstance(spec[key], list))
    }
    if not schema:
        return {}
    problems = input_schema.check_schema(schema)
    for where, message in problems:
        log.add((*path, *where), message)
    if not problems and spec.get("default") is not None:
        for where, message in input_schema.problems(spec["default"], schema):
            log.add((*path, "default", *where), message)
    return {"json_schema": schema}


def _read_jobs(
    value: object,
    inputs: Mapping[str, Any],
    log: ProblemLog,
    declared_vars: tuple[str, ...] | None = None,
) -> dict[str, JobDraft]:
    if value is None:
        log.add(("jobs",), "missing: a workflow needs at least one job")
        return {}
    if not isinstance(value, Mapping):
        log.add(("jobs",), f"expected a mapping of job names to jobs, got {f.describe(value)}")
        return {}
    if not value:
        log.add(("jobs",), "empty: a workflow needs at least one job")
    jobs: dict[str, JobDraft] = {}
    for name, body in value.items():
        path: Path = ("jobs", name)
        if f.token(name, path, log, what="job name") is not None:
            jobs[name] = read_job(name, body, path, log)
            if isinstance(body, Mapping):
                read_fan_out(body, path, jobs[name], log)
            read_steps(body, path, jobs[name], log)
    check_job_needs(jobs, log)
    report_cycles(
        {
            name: [(up, where) for up, where in draft.upstream if up in jobs and up != name]
            for name, draft in jobs.items()
        },
        log,
    )
    check_job_expressions(jobs, inputs, log, declared_vars=declared_vars)
    check_fan_out(jobs, log)
    return jobs


def _assemble(
    fields: dict[str, Any], jobs: Mapping[str, JobDraft], log: ProblemLog
) -> WorkflowDefinition:
    # Everything was checked above; a model error here would be a gap in those checks, and is
    # still reported as a located problem rather than escaping as a pydantic error.
    try:
        return WorkflowDefinition.model_validate(
            {**fields, "jobs": {name: draft.fields for name, draft in jobs.items()}}
        )
    except ValidationError as error:
        for item in error.errors():
            log.add(tuple(item["loc"]), item["msg"])
        log.fail()


def validate_inputs(definition: WorkflowDefinition, given: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs a run starts with: ``given`` plus defaults.

    Raises ``InvalidWorkflow`` naming each unknown input, each missing required one and every
    way a value breaks its input's declared schema (``inputs.count: -1 is less than the
    minimum 1``).
    """
    log = ProblemLog(source=definition.name)
    for name in given:
        if name not in definition.inputs:
            known = ", ".join(definition.inputs) or "none"
            log.add(("inputs", name), f"unknown input (this workflow takes: {known})")
    values: dict[str, Any] = {}
    for name, spec in definition.inputs.items():
        values[name] = _input_value(name, spec, given, log)
        if spec.json_schema and (name in given or values[name] is not None):
            for where, message in input_schema.problems(values[name], spec.json_schema):
                log.add(("inputs", name, *where), message)
    log.raise_if_any()
    return values


def _input_value(name: str, spec: InputSpec, given: Mapping[str, Any], log: ProblemLog) -> Any:
    if name in given:
        return given[name]
    if spec.required:
        log.add(("inputs", name), "required input is missing")
    # A copy, so that a run changing its inputs cannot change the definition's default.
    return copy.deepcopy(spec.default)
