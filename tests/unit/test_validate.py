"""Validation: every problem kind, reported all at once with its location; YAML loading."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import actors.definitions as definitions
from actors.definitions import (
    load_workflow_file,
    load_workflow_text,
    parse_workflow,
    validate_inputs,
)
from actors.definitions._jobs import JOB_FIELDS, RETRY_FIELDS
from actors.definitions.input_schema import KEYWORDS
from actors.definitions.validate import INPUT_FIELDS, REGISTRY_FIELDS, WORKFLOW_FIELDS
from events.definition import (
    Backoff,
    InputSpec,
    JobDefinition,
    OnFailure,
    RetryPolicy,
    WorkflowDefinition,
)
from events.errors import InvalidWorkflow

DATA = Path(__file__).parents[1] / "data" / "workflows"
EXAMPLES = Path(__file__).parents[2] / "examples"
INT_KEY: dict[Any, Any] = {7: 1}
EXPECT = "# expect: "


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(raw)
    return caught.value.problems


def minimal(**jobs: Any) -> dict[str, Any]:
    return {"name": "wf", "jobs": jobs or {"a": {"run": "true"}}}


# --- fixture files -------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((DATA / "invalid").glob("*.yaml")), ids=lambda p: p.name)
def test_invalid_fixture_reports_exactly_the_expected_problems(path: Path) -> None:
    text = path.read_text()
    expected = [line[len(EXPECT) :] for line in text.splitlines() if line.startswith(EXPECT)]
    assert expected, f"{path.name} lists no '# expect:' lines"
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_text(text, source=path.name)
    assert caught.value.problems == expected
    assert caught.value.source == path.name


@pytest.mark.parametrize("path", sorted((DATA / "valid").glob("*.yaml")), ids=lambda p: p.name)
def test_valid_fixture_loads(path: Path) -> None:
    assert isinstance(load_workflow_file(path), WorkflowDefinition)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    assert load_workflow_file(path).jobs


def test_issue_example_is_normalised() -> None:
    definition = load_workflow_file(DATA / "valid" / "issue_example.yaml")
    assert definition.timeout == 1800.0
    assert definition.inputs == {"version": InputSpec(default="0.1.0")}
    build = definition.jobs["build"]
    assert build.labels == ("linux",)
    assert build.timeout == 600.0
    assert build.retry == RetryPolicy(
        max_attempts=3, backoff=Backoff.EXPONENTIAL, delay=1.0, max_delay=30.0
    )
    assert definition.jobs["lint"].on_failure is OnFailure.CONTINUE
    notify = definition.jobs["notify"]
    assert notify.needs_any == ("test", "lint")
    assert notify.if_ == "${{ always() }}"
    assert notify.delay == 5.0
    assert definition.jobs["test"].env == {"ARTIFACT": "${{ needs.build.outputs.artifact }}"}


def test_yaml_1_1_words_keep_their_meaning() -> None:
    definition = load_workflow_file(DATA / "valid" / "yaml_gotchas.yaml")
    assert definition.env == {
        "ANSWER": "no",
        "OFF": "off",
        "CLOCK": "1:30",
        "HEX": "16",
        "EMPTY": "",
    }
    assert definition.inputs["on"].default == "yes"
    assert definition.inputs["when"].default == "2026-01-01"
    assert definition.inputs["count"].default == 10
    assert set(definition.jobs) == {"yes", "no", "123"}
    assert definition.jobs["no"].if_ == "false"
    # The merge key brought labels and retry from the anchored job; `run` was overridden.
    assert definition.jobs["no"].labels == ("linux",)
    assert definition.jobs["no"].retry.max_attempts == 2
    assert definition.jobs["no"].run == "echo never"


def test_uses_with_and_at() -> None:
    definition = load_workflow_file(DATA / "valid" / "uses_with.yaml")
    fetch, store = definition.jobs["fetch"], definition.jobs["store"]
    assert fetch.uses == "http_get"
    assert fetch.with_["headers"] == {"Accept": "application/json"}
    assert fetch.at == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert store.retry.backoff is Backoff.LINEAR
    assert store.timeout == 5400.0
    assert definition.inputs["bucket"].required is True


# --- problems from raw mappings (no file, so no line numbers) -------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([1, 2], "workflow: expected a mapping with name and jobs, got a list"),
        (None, "workflow: expected a mapping with name and jobs, got nothing (null)"),
        ({"jobs": {"a": {"run": "x"}}}, "name: missing: every workflow needs a name"),
        ({"name": "wf"}, "jobs: missing: a workflow needs at least one job"),
        ({"name": "wf", "jobs": []}, "jobs: expected a mapping of job names to jobs, got a list"),
        ({"name": "wf", "jobs": {}}, "jobs: empty: a workflow needs at least one job"),
        ({**minimal(), "extra": 1}, "extra: unknown field: expected one of name, inputs"),
        ({**minimal(), **INT_KEY}, "[7]: field names must be text, got a number (7)"),
        ({**minimal(), "name": 5}, "name: workflow name must be text, got a number (5)"),
        ({**minimal(), "inputs": [1]}, "inputs: expected a mapping of input names, got a list"),
        ({**minimal(), "env": "A=1"}, "env: expected a mapping of NAME: value, got text"),
        ({**minimal(), "timeout": "1 hour"}, "timeout: invalid duration '1 hour'"),
    ],
)
def test_workflow_level_problems(raw: Any, problem: str) -> None:
    assert any(p.startswith(problem) for p in problems_of(raw)), problems_of(raw)


@pytest.mark.parametrize(
    ("job", "problem"),
    [
        ({"run": "x", "needs": ["biuld"]}, "jobs.a.needs[0]: unknown job 'biuld'"),
        ({"run": "x", "needs": "a"}, "jobs.a.needs: job 'a' cannot need itself"),
        ({"run": "x", "needs_any": [1]}, "jobs.a.needs_any[0]: job name must be text"),
        ({"run": "x", "needs": {"b": 1}}, "jobs.a.needs: expected a list, got a mapping"),
        ({"run": "x", "labels": ["a b"]}, "jobs.a.labels[0]: label 'a b' is not a valid name"),
        ({"run": "x", "if": ["x"]}, "jobs.a.if: expected an expression, got a list"),
        ({"run": "x", "if": "inputs.nope"}, "jobs.a.if: inputs.nope: no such input"),
        ({"run": "x", "timeout": 0}, "jobs.a.timeout: 0 must be longer than zero"),
        ({"run": "x", "timeout": "5x"}, "jobs.a.timeout: invalid duration '5x'"),
        ({"run": "x", "delay": "-1s"}, "jobs.a.delay: invalid duration '-1s'"),
        ({"run": "x", "at": 5}, "jobs.a.at: expected an ISO 8601 time"),
        ({"run": "x", "at": "2026-01-01T00:00:00"}, "jobs.a.at: '2026-01-01T00:00:00' has no"),
        ({"run": "x", "retry": "3"}, "jobs.a.retry: expected a number of attempts or a mapping"),
        ({"run": "x", "retry": {"max_attempts": True}}, "jobs.a.retry.max_attempts: must be"),
        ({"run": "x", "retry": {"max_attempts": 2.5}}, "jobs.a.retry.max_attempts: must be"),
        ({"run": "x", "retry": {"jitter": 1}}, "jobs.a.retry.jitter: unknown field"),
        ({"run": "x", "retry": {"backoff": "fixed"}}, "jobs.a.retry.backoff: fixed backoff needs"),
        ({"run": "x", "on_failure": "stop"}, "jobs.a.on_failure: on_failure must be one of"),
        ({"run": "x", "env": {"A-B": "1"}}, "jobs.a.env.A-B: 'A-B' is not a valid environment"),
        ({"run": "x", "env": {"A": {"b": 1}}}, "jobs.a.env.A: expected text, a number or a bool"),
        ({"run": 5}, "jobs.a.run: run must be text, got a number (5)"),
        ({"uses": ""}, "jobs.a.uses: uses is empty"),
        ({"uses": "h", "with": [1]}, "jobs.a.with: expected a mapping of arguments, got a list"),
        ({"uses": "h", "with": {"x": object()}}, "jobs.a.with.x: a value of type object cannot be"),
        ({"uses": "h", "with": {"x": float("nan")}}, "jobs.a.with.x: nan cannot be stored"),
        ({"uses": "h", "with": {"x": {1: 2}}}, "jobs.a.with.x[1]: keys must be text"),
        ({"uses": "h", "with": {"x": "${{ nope }}"}}, "jobs.a.with.x: unknown name 'nope'"),
        ({"run": "${{ needs.a.result }}"}, "jobs.a.run: needs.a: job 'a' is not upstream of 'a'"),
        (
            {"run": "x", "continue-on-error": True},
            "jobs.a.continue-on-error: unknown field: use on",
        ),
        ({"run": "x", "timeout-minutes": 5}, "jobs.a.timeout-minutes: unknown field: use timeout"),
        (
            {"run": "x", "needs-any": ["b"]},
            "jobs.a.needs-any: unknown field: did you mean 'needs_any'",
        ),
    ],
)
def test_job_problems_name_their_location(job: dict[str, Any], problem: str) -> None:
    problems = problems_of(minimal(a=job))
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"v": "1.0"}, "inputs.v: expected a mapping with default/required/description, got text"),
        ({"v": {"required": "yes"}}, "inputs.v.required: expected true or false, got text"),
        ({"v": {"description": 1}}, "inputs.v.description: expected text, got a number (1)"),
        ({"v": {"kind": "string"}}, "inputs.v.kind: unknown field"),
        ({"v": {"default": b"x"}}, "inputs.v.default: bytes cannot be stored"),
        ({"a.b": {}}, "inputs['a.b']: input name 'a.b' is not a valid name"),
        ({"v": {"required": True, "default": 1}}, "inputs.v: required: true and a default"),
    ],
)
def test_input_problems(inputs: dict[str, Any], problem: str) -> None:
    problems = problems_of({**minimal(), "inputs": inputs})
    assert any(p.startswith(problem) for p in problems), problems


def test_cycle_is_printed_as_a_path() -> None:
    raw = minimal(
        a={"run": "x", "needs": ["b"]},
        b={"run": "x", "needs": ["c"]},
        c={"run": "x", "needs": ["a"]},
    )
    assert problems_of(raw) == [
        "jobs.a.needs[0]: dependency cycle a -> b -> c -> a (each job needs the next)"
    ]


def test_cycles_through_needs_any_and_behind_other_jobs() -> None:
    raw = minimal(
        start={"run": "x"},
        a={"run": "x", "needs": ["start"], "needs_any": ["b"]},
        b={"run": "x", "needs": ["a"]},
        after={"run": "x", "needs": ["b"]},
    )
    assert problems_of(raw) == [
        "jobs.a.needs_any[0]: dependency cycle a -> b -> a (each job needs the next)"
    ]


def test_outputs_of_jobs_not_directly_upstream_are_refused() -> None:
    raw = minimal(
        build={"run": "x"},
        test={"run": "x", "needs": ["build"]},
        deploy={"run": "echo ${{ needs.build.outputs.artifact }}", "needs": ["test"]},
    )
    assert problems_of(raw) == [
        "jobs.deploy.run: needs.build: job 'build' is not upstream of 'deploy'; "
        "add it to needs or needs_any"
    ]


def test_needs_any_counts_as_upstream_for_references() -> None:
    raw = minimal(
        a={"run": "x"},
        b={"run": "x"},
        c={"run": "echo ${{ needs.a.outputs.x }}", "needs_any": ["a", "b"], "if": "always()"},
    )
    assert parse_workflow(raw).jobs["c"].needs_any == ("a", "b")


def test_workflow_env_may_use_inputs_but_not_needs() -> None:
    raw = {
        **minimal(),
        "inputs": {"v": {"default": "1"}},
        "env": {"A": "${{ inputs.v }}", "B": "${{ needs.a.result }}", "C": "${{ inputs.w }}"},
    }
    assert problems_of(raw) == [
        "env.B: needs is not available in workflow env: no job has run yet",
        "env.C: inputs.w: no such input; declared: v",
    ]


def test_all_problems_are_reported_at_once() -> None:
    raw = {
        "name": "bad name",
        "bogus": True,
        "jobs": {
            "a": {"run": "x", "needs": ["zz"], "timeout": "never"},
            "b": {"needs": ["a"]},
            "c": {"run": "${{ inputs.nope }}", "retry": {"max_attempts": 0}},
        },
    }
    locations = [problem.split(":")[0] for problem in problems_of(raw)]
    assert sorted(locations) == [
        "bogus",
        "jobs.a.needs[0]",
        "jobs.a.timeout",
        "jobs.b",
        "jobs.c.retry.max_attempts",
        "jobs.c.run",
        "name",
    ]


def test_source_names_the_workflow_in_the_error_only() -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow({"name": "wf"}, source="wf.py")
    assert caught.value.source == "wf.py"
    assert str(caught.value).startswith("invalid workflow wf.py: 1 problem(s)")
    assert caught.value.problems == ["jobs: missing: a workflow needs at least one job"]


def test_defaults_and_normalisation() -> None:
    definition = parse_workflow(
        minimal(
            a={"run": "x", "labels": "linux", "env": {"N": 1, "B": True, "E": None}, "retry": 3},
            b={"run": "x", "needs": "a", "if": False, "retry": {"max_attempts": 2, "delay": "1s"}},
        )
    )
    a, b = definition.jobs["a"], definition.jobs["b"]
    assert a.labels == ("linux",)
    assert a.env == {"N": "1", "B": "true", "E": ""}
    assert a.retry == RetryPolicy(max_attempts=3)
    assert b.needs == ("a",)
    assert b.if_ == "false"
    # A delay without a backoff means a fixed delay, not an ignored one.
    assert b.retry == RetryPolicy(max_attempts=2, backoff=Backoff.FIXED, delay=1.0)
    assert a.on_failure is OnFailure.FAIL_WORKFLOW


def test_parse_does_not_modify_its_input() -> None:
    raw = minimal(a={"uses": "h", "with": {"x": [1, {"y": 2}]}})
    before = copy.deepcopy(raw)
    parse_workflow(raw)
    assert raw == before


def test_field_lists_match_the_models() -> None:
    read_into_fan_out = {"strategy", "for_each", "max_parallel", "fail_fast"}
    assert set(JOB_FIELDS) - read_into_fan_out == {
        field.alias or name for name, field in JobDefinition.model_fields.items()
    } - {"name", "fan_out"}
    assert set(RETRY_FIELDS) == set(RetryPolicy.model_fields)
    # An input's JSON Schema keywords sit beside default/required/description in a file.
    assert set(INPUT_FIELDS) == set(InputSpec.model_fields) - {"json_schema"} | set(KEYWORDS)
    assert set(WORKFLOW_FIELDS + REGISTRY_FIELDS) == set(WorkflowDefinition.model_fields)


def test_public_names_are_exported() -> None:
    for name in definitions.__all__:
        assert getattr(definitions, name) is not None


# --- inputs given at start ------------------------------------------------------------------


def _with_inputs(inputs: dict[str, Any]) -> WorkflowDefinition:
    return parse_workflow({**minimal(), "inputs": inputs})


def test_validate_inputs_applies_defaults() -> None:
    definition = _with_inputs({"v": {"default": "1"}, "opt": {}, "req": {"required": True}})
    assert validate_inputs(definition, {"req": 5}) == {"v": "1", "opt": None, "req": 5}
    assert validate_inputs(definition, {"req": 5, "v": "2"})["v"] == "2"


def test_validate_inputs_reports_unknown_and_missing_together() -> None:
    definition = _with_inputs({"v": {"default": "1"}, "req": {"required": True}})
    with pytest.raises(InvalidWorkflow) as caught:
        validate_inputs(definition, {"vv": 1})
    assert caught.value.problems == [
        "inputs.vv: unknown input (this workflow takes: v, req)",
        "inputs.req: required input is missing",
    ]
    assert caught.value.source == "wf"


def test_validate_inputs_copies_defaults() -> None:
    definition = _with_inputs({"tags": {"default": ["a"]}})
    validate_inputs(definition, {})["tags"].append("b")
    assert validate_inputs(definition, {})["tags"] == ["a"]


# --- YAML specifics -------------------------------------------------------------------------


def one_problem(text: str) -> str:
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_text(text, source="t.yaml")
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: x\njobs: [", "t.yaml:2:8 malformed YAML: while parsing a flow node"),
        ("name: x\n\tjobs: {}", "t.yaml:2:1 malformed YAML: while scanning for the next token"),
        ("a: 1\n---\nb: 2", "t.yaml:2:1 malformed YAML: expected a single document"),
        ("name: 'x\njobs: {}", "t.yaml:2:9 malformed YAML: while scanning a quoted scalar"),
        ("name: x\nb: \x00", "t.yaml:2:4 malformed YAML: character #x0000 is not allowed"),
        ("[" * 2000, "t.yaml: nested too deeply to read"),
        ("", "workflow: expected a mapping with name and jobs, got nothing (null)"),
        ("a: &a [*a]\n", "t.yaml:1 a[0]: an alias refers to itself or nests too deeply"),
    ],
)
def test_yaml_problems_are_single_and_located(text: str, problem: str) -> None:
    if text.startswith("a: &a"):
        with pytest.raises(InvalidWorkflow) as caught:
            load_workflow_text(text, source="t.yaml")
        assert problem in caught.value.problems
    else:
        assert one_problem(text).startswith(problem)


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    problem = one_problem("\n".join(lines))
    assert "malformed YAML: the document expands to more than 100000 values" in problem


def test_unsupported_tags_are_problems() -> None:
    text = "name: x\njobs:\n  a: {run: !!python/object:os.system echo, labels: !!set {a: null}}\n"
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_text(text, source="t.yaml")
    assert (
        "t.yaml:3 jobs.a.run: unsupported YAML tag !!python/object:os.system: use plain values"
        in (caught.value.problems)
    )
    assert "t.yaml:3 jobs.a.labels: unsupported YAML tag !!set: use plain values" in (
        caught.value.problems
    )


def test_mapping_keys_are_text_as_written() -> None:
    definition = load_workflow_text("name: x\njobs:\n  123: {run: a}\n  true: {run: b}\n")
    assert list(definition.jobs) == ["123", "true"]


def test_complex_keys_are_problems() -> None:
    problem = one_problem("name: x\njobs: {a: {run: b}}\n? [k]\n: v\n")
    assert (
        problem
        == "<string>:3 workflow: a mapping key must be plain text, not a list or mapping".replace(
            "<string>", "t.yaml"
        )
    )


def test_octal_looking_numbers_are_decimal() -> None:
    definition = load_workflow_text(
        "name: x\ninputs: {n: {default: 010}, o: {default: 0o10}}\njobs: {a: {run: b}}"
    )
    assert definition.inputs["n"].default == 10
    assert definition.inputs["o"].default == 8


def test_file_problems_carry_the_path(tmp_path: Path) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(
        "name: release\njobs:\n  build: {run: make}\n  test:\n    needs: [biuld]\n    run: t\n"
    )
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow_file(path)
    assert caught.value.problems == [
        f"{path}:5 jobs.test.needs[0]: unknown job 'biuld' (did you mean 'build'?)"
    ]
    assert caught.value.source == str(path)


def test_missing_and_undecodable_files_are_problems(tmp_path: Path) -> None:
    with pytest.raises(InvalidWorkflow, match="cannot read: No such file or directory"):
        load_workflow_file(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe")
    with pytest.raises(InvalidWorkflow, match=r"not UTF-8 text \(byte 6\)"):
        load_workflow_file(binary)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffname: x\njobs: {a: {run: b}}\n".encode())
    assert load_workflow_file(path).name == "x"


def test_a_name_ending_in_a_newline_is_not_a_name() -> None:
    # Python's "$" also matches before a final newline: "build\n" passed as a subject token.
    from actors.definitions._problems import format_path
    from events.subjects import is_valid_token

    assert not is_valid_token("build\n")
    assert format_path(("jobs", "0\n")) == "jobs['0\\n']"
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(
            {"name": "wf", "jobs": {"a\n": {"run": "x"}, "b": {"run": "x", "env": {"A\n": "1"}}}}
        )
    problems = "\n".join(caught.value.problems)
    assert "jobs['a\\n']: job name 'a\\n' is not a valid name" in problems
    assert "jobs.b.env['A\\n']: 'A\\n' is not a valid environment variable name" in problems
