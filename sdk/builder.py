"""Defining workflows in Python, equivalent to YAML files and validated by the same code.

Example::

    wf = Workflow("release", inputs={"version": "0.1.0"}, env={"REGION": "eu"}, timeout="30m")
    build = wf.job("build", run="make build", labels=["linux"],
                   retry=Retry(max_attempts=3, backoff="exponential", delay="1s"))
    wf.job("test", run=f"./test.sh {build.output('artifact')}", needs=[build])
    definition = wf.build()

Sub-workflows and loops::

    child = Workflow("child", inputs={"who": Input(required=True)}, outputs={"greeting": ...})
    parent = Workflow("parent")
    sub = parent.job("sub", workflow=child, with_={"who": "ann"})   # or workflow="./child.yaml"
    parent.job("ship", workflow="deploy@3")   # a registered definition, looked up at the start
    parent.job("poll", run=f"./poll.sh {Loop.ITERATION}",
               loop=Loop(until="outputs.done == 'true'", max_iterations=20))

``to_dict()`` gives the raw mapping a YAML file would hold; ``build()`` runs it through
``actors.definitions.parse_workflow``, so both front doors report the same problems the same way.
Durations may be ``"500ms"``/``"1h30m"`` text, seconds, or ``timedelta``; pydantic models are
accepted wherever data goes (``with_``, input defaults) and stored as their JSON form.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from actors.definitions import load_workflow_file, parse_workflow
from actors.definitions.mapping import definition_mapping
from events.definition import (
    Backoff,
    Concurrency,
    OnFailure,
    RateLimit,
    RetryPolicy,
    WorkflowDefinition,
)
from events.definition_refs import is_file_reference
from events.errors import InvalidWorkflow
from sdk.builder_http import Http, Poll

__all__ = [
    "INDEX",
    "ITEM",
    "Http",
    "Input",
    "JobRef",
    "Loop",
    "Poll",
    "Retry",
    "WaitFor",
    "Workflow",
    "for_each_of",
    "matrix_value",
]

# A fan-out instance's item (for_each) and its position from 0, as templates.
ITEM = "${{ item }}"
INDEX = "${{ index }}"

Duration = str | float | timedelta
BackoffName = Backoff | Literal["none", "fixed", "exponential", "linear"]
OnFailureName = OnFailure | Literal["fail_workflow", "continue", "retry_forever"]


class Retry(BaseModel):
    """How a job is retried; durations as text (``"1s"``), seconds or ``timedelta``.

    A ``delay`` without a ``backoff`` means ``fixed``, as in YAML.
    """

    model_config = ConfigDict(frozen=True)

    max_attempts: int = 1
    backoff: BackoffName | None = None
    delay: Duration | None = None
    max_delay: Duration | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``retry:`` mapping of a definition file."""
        raw: dict[str, Any] = {"max_attempts": self.max_attempts}
        if self.backoff is not None:
            raw["backoff"] = str(Backoff(self.backoff))
        for key in ("delay", "max_delay"):
            value = getattr(self, key)
            if value is not None:
                raw[key] = _duration(value)
        return raw


class WaitFor(BaseModel):
    """``wait_for:`` of a job that waits for the outside world on no worker: signal ``signal``
    (``jetwork signal ID NAME``), or a request to its webhook whose JSON body has every key of
    ``webhook_match`` equal, succeeds it with the data as outputs; ``timeout`` fails it.
    Examples: ``wf.job("approve", wait_for=WaitFor(signal="approve", timeout="24h"))``,
    ``WaitFor(webhook_match={"type": "paid", "order": wf.input("order")}, timeout="1h")``.
    """

    model_config = ConfigDict(frozen=True)

    signal: str | None = None
    webhook_match: Mapping[str, Any] | None = None
    timeout: Duration | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``wait_for:`` mapping of a definition file."""
        raw: dict[str, Any] = {}
        if self.signal is not None:
            raw["signal"] = self.signal
        if self.webhook_match is not None:
            raw["webhook"] = {"match": _data(dict(self.webhook_match))}
        if self.timeout is not None:
            raw["timeout"] = _duration(self.timeout)
        return raw


class Input(BaseModel):
    """A workflow input: a ``default``, or ``required=True`` for callers to supply it; JSON
    Schema keywords (``type="integer", minimum=1``) type it (``docs/workflows.md``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    default: Any = None
    required: bool = False
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``inputs.<name>:`` mapping of a definition file (only what was set)."""
        raw = self.model_dump(exclude_unset=True)
        if "default" in raw:
            raw["default"] = _data(self.default)
        return raw


class Loop(BaseModel):
    """``loop:``: run the job again until ``until`` (an expression over its latest
    ``outputs``) holds, at most ``max_iterations`` times; ``Loop.ITERATION`` is the template of
    the iteration's number (from 1)."""

    model_config = ConfigDict(frozen=True)

    ITERATION: ClassVar[str] = "${{ loop.iteration }}"

    until: str
    max_iterations: int

    def to_dict(self) -> dict[str, Any]:
        """The ``loop:`` mapping of a definition file."""
        return {"until": self.until, "max_iterations": self.max_iterations}


@dataclass(frozen=True)
class JobRef:
    """A job added to a ``Workflow``; pass it to ``needs``/``needs_any`` of later jobs."""

    name: str

    @property
    def result(self) -> str:
        """The expression ``needs.<job>.result``, for conditions (``success``, ``failure``...)."""
        return f"needs.{self.name}.result"

    def output(self, key: str) -> str:
        """A template reading one of this job's outputs: ``${{ needs.<job>.outputs.<key> }}``."""
        return f"${{{{ needs.{self.name}.outputs.{key} }}}}"


def matrix_value(key: str) -> str:
    """The template ``${{ matrix.<key> }}``: a matrix instance's value for ``key``."""
    return f"${{{{ matrix.{key} }}}}"


def for_each_of(job: JobRef, key: str) -> str:
    """``for_each`` over a JSON list in an upstream job's output:
    ``${{ fromJSON(needs.<job>.outputs.<key>) }}``."""
    return f"${{{{ fromJSON(needs.{job.name}.outputs.{key}) }}}}"


class Workflow:
    """A workflow being defined: add jobs with ``job()``, then ``build()`` it."""

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Input | Any] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Duration | None = None,
        dispatch_timeout: Duration | None = None,
        vars: Mapping[str, Any] | None = None,
        outputs: Mapping[str, str] | None = None,
        concurrency: Concurrency | str | None = None,
        priority: int | None = None,
    ) -> None:
        """``inputs`` maps names to an ``Input`` or, for short, to a default value;
        ``dispatch_timeout`` is the default of every job's; ``vars`` are the workflow variables
        a run starts with (``${{ vars.NAME }}``, changed by ``jetwork set``); ``outputs`` is the
        workflow's result (templates over ``needs.<job>``, e.g. ``build.output("artifact")``);
        ``concurrency``: at most ``limit`` runs of the group at once (``Concurrency(group=
        "deploy-${{ inputs.env }}", limit=1, cancel_in_progress=False)``, or a group's name);
        ``priority`` (1..10) is the default of every job's."""
        self.name = name
        self._inputs: dict[str, Input] = {}
        for input_name, spec in (inputs or {}).items():
            self.input(input_name, **_input_fields(spec))
        self._env = dict(env or {})
        self._vars = {key: _data(value) for key, value in (vars or {}).items()}
        self._timeout = timeout
        self._dispatch_timeout = dispatch_timeout
        self._jobs: dict[str, dict[str, Any]] = {}
        self._outputs = dict(outputs or {})
        self._workflows: dict[str, dict[str, Any]] = {}  # embedded sub-workflows
        self._concurrency = _group_mapping(concurrency)
        self._priority = priority

    def input(
        self,
        name: str,
        *,
        default: Any = None,
        required: bool = False,
        description: str | None = None,
        **schema: Any,
    ) -> str:
        """Declare an input; returns the template ``${{ inputs.<name> }}`` for use in jobs.

        ``schema``: JSON Schema keywords the value must meet (``type="integer", minimum=1``,
        ``enum=["fast", "safe"]``), checked at every start."""
        fields: dict[str, Any] = {"required": True} if required else {}
        fields.update(schema)
        if default is not None:
            fields["default"] = default
        if description is not None:
            fields["description"] = description
        self._inputs[name] = Input(**fields)
        return f"${{{{ inputs.{name} }}}}"

    def job(
        self,
        name: str,
        *,
        run: str | None = None,
        uses: str | None = None,
        with_: Mapping[str, Any] | BaseModel | None = None,
        labels: Iterable[str] = (),
        needs: Iterable[JobRef | str] | JobRef | str = (),
        needs_any: Iterable[JobRef | str] | JobRef | str = (),
        if_: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: Duration | None = None,
        dispatch_timeout: Duration | None = None,
        retry: Retry | RetryPolicy | int | None = None,
        on_failure: OnFailureName | None = None,
        delay: Duration | None = None,
        at: datetime | str | None = None,
        rate_limit: RateLimit | None = None,
        concurrency: Concurrency | str | None = None,
        wait_for: WaitFor | None = None,
        workflow: Workflow | WorkflowDefinition | str | os.PathLike[str] | None = None,
        loop: Loop | None = None,
        matrix: Mapping[str, Any] | None = None,
        for_each: str | list[Any] | None = None,
        max_parallel: int | None = None,
        fail_fast: bool | None = None,
        set_: Mapping[str, str] | None = None,
        sleep: Duration | None = None,
        until: datetime | str | None = None,
        needs_at_least: tuple[int, Iterable[JobRef | str]] | None = None,
        http: Http | Mapping[str, Any] | None = None,
        priority: int | None = None,
    ) -> JobRef:
        """Add a job; give exactly one of ``run`` (a shell command), ``uses`` (a handler),
        ``wait_for`` (a job that waits for a signal, on no worker), ``workflow`` (a
        sub-workflow: a ``Workflow``, a definition, a YAML file's path, read now, or a registered
        definition's ``"NAME"``/``"NAME@VERSION"``, looked up when the workflow is started; a
        text ending in ``.yaml``/``.yml`` or holding a ``/`` is a path; ``with_`` is its
        inputs), ``set_`` (outputs computed from expressions, no worker), ``sleep`` or
        ``until`` (a durable wait, no worker), ``http`` (a request jetwork makes, ``Http``).
        ``loop`` runs the job again until its condition holds. ``needs_at_least=(2, [a, b, c])``:
        ready once 2 of them succeeded. ``priority`` (1..10, over the workflow's): dispatched
        before lower ones when workers are scarce.

        ``matrix`` (YAML's ``strategy.matrix``) or ``for_each`` (a list, or
        ``for_each_of(job, "items")``) runs it once per item as ``<name>-<index>``; read the item
        with ``matrix_value("os")`` or ``ITEM``, its position with ``INDEX``.

        Problems in the job are reported by ``build()``, together with all others. A job name
        used twice is reported at once, since the second job would silently replace the first.
        """
        if name in self._jobs:
            raise InvalidWorkflow([f"jobs.{name}: duplicate job name"], source=self.name)
        raw: dict[str, Any] = {}
        _put(raw, "run", run)
        _put(raw, "uses", uses)
        _put(raw, "with", None if with_ is None else _data(with_))
        _put(raw, "labels", list(labels) or None)
        _put(raw, "needs", _names(needs) or None)
        _put(raw, "needs_any", _names(needs_any) or None)
        _put(raw, "if", if_)
        _put(raw, "env", None if env is None else dict(env))
        _put(raw, "timeout", None if timeout is None else _duration(timeout))
        _put(raw, "dispatch_timeout", _duration_or_none(dispatch_timeout))
        _put(raw, "retry", None if retry is None else _retry(retry))
        _put(raw, "on_failure", None if on_failure is None else str(on_failure))
        _put(raw, "delay", None if delay is None else _duration(delay))
        _put(raw, "at", at.isoformat() if isinstance(at, datetime) else at)
        if rate_limit is not None:
            raw["rate_limit"] = {"limit": rate_limit.limit, "per": rate_limit.per}
        _put(raw, "concurrency", _group_mapping(concurrency))
        _put(raw, "wait_for", None if wait_for is None else wait_for.to_dict())
        _put(raw, "workflow", None if workflow is None else self._embed(workflow))
        _put(raw, "loop", None if loop is None else loop.to_dict())
        _put(raw, "strategy", None if matrix is None else {"matrix": _data(dict(matrix))})
        _put(raw, "for_each", for_each)
        _put(raw, "max_parallel", max_parallel)
        _put(raw, "fail_fast", fail_fast)
        _put(raw, "set", None if set_ is None else dict(set_))
        _put(raw, "sleep", None if sleep is None else _duration(sleep))
        _put(raw, "until", until.isoformat() if isinstance(until, datetime) else until)
        if needs_at_least is not None:
            count, of = needs_at_least
            raw["needs_at_least"] = {"count": count, "of": _names(of)}
        _put(raw, "http", http.to_dict() if isinstance(http, Http) else http)
        _put(raw, "priority", priority)
        self._jobs[name] = raw
        return JobRef(name)

    def output(self, name: str, template: str) -> None:
        """Add one of the workflow's ``outputs`` (its result), e.g.
        ``wf.output("tag", meta.output("tag"))``; rendered when the workflow succeeds."""
        self._outputs[name] = template

    def to_dict(self) -> dict[str, Any]:
        """The raw mapping, exactly as a YAML definition file would hold it."""
        raw: dict[str, Any] = {"name": self.name}
        if self._inputs:
            raw["inputs"] = {name: spec.to_dict() for name, spec in self._inputs.items()}
        if self._env:
            raw["env"] = dict(self._env)
        if self._vars:
            raw["vars"] = dict(self._vars)
        if self._timeout is not None:
            raw["timeout"] = _duration(self._timeout)
        if self._dispatch_timeout is not None:
            raw["dispatch_timeout"] = _duration(self._dispatch_timeout)
        raw["jobs"] = {name: dict(job) for name, job in self._jobs.items()}
        if self._outputs:
            raw["outputs"] = dict(self._outputs)
        if self._workflows:
            raw["workflows"] = dict(self._workflows)
        _put(raw, "concurrency", self._concurrency)
        if self._priority is not None:
            raw["priority"] = self._priority
        return raw

    def _embed(self, child: Workflow | WorkflowDefinition | str | os.PathLike[str]) -> str:
        """Embed a sub-workflow; returns the reference its job names it by (a registered
        definition's name stays a reference: ``Client.start`` looks it up and pins it)."""
        if isinstance(child, str) and not is_file_reference(child):
            return child
        if isinstance(child, Workflow):
            ref, raw = child.name, child.to_dict()
        elif isinstance(child, WorkflowDefinition):
            ref, raw = child.name, definition_mapping(child)
        else:
            ref = os.fspath(child)
            raw = definition_mapping(load_workflow_file(ref))
        self._workflows[ref] = raw
        return ref

    def build(self) -> WorkflowDefinition:
        """The validated definition; raises ``InvalidWorkflow`` listing every problem."""
        return parse_workflow(self.to_dict(), source=self.name)


def _put(raw: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        raw[key] = value


def _names(refs: Iterable[JobRef | str] | JobRef | str) -> list[str]:
    if isinstance(refs, JobRef | str):
        refs = [refs]
    return [ref.name if isinstance(ref, JobRef) else ref for ref in refs]


def _duration(value: Duration) -> str | float:
    return value.total_seconds() if isinstance(value, timedelta) else value


def _duration_or_none(value: Duration | None) -> str | float | None:
    return None if value is None else _duration(value)


def _data(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _retry(value: Retry | RetryPolicy | int) -> dict[str, Any] | int:
    if isinstance(value, RetryPolicy):
        raw: dict[str, Any] = {"max_attempts": value.max_attempts, "backoff": str(value.backoff)}
        if value.backoff is not Backoff.NONE:
            raw["delay"] = value.delay
        if value.max_delay is not None:
            raw["max_delay"] = value.max_delay
        return raw
    if isinstance(value, Retry):
        return value.to_dict()
    return value


def _input_fields(spec: Input | Any) -> dict[str, Any]:
    if isinstance(spec, Input):
        return spec.model_dump(exclude_unset=True)
    return {"default": spec}


def _group_mapping(concurrency: Concurrency | str | None) -> dict[str, Any] | str | None:
    if isinstance(concurrency, Concurrency):
        return concurrency.model_dump(mode="json")
    return concurrency
