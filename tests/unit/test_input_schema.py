"""Typed inputs: the JSON Schema subset (``actors.definitions.input_schema``), how a definition
declares it, and the start refused with every problem, located."""

from __future__ import annotations

from typing import Any

import pytest

from actors.commands import StartWorkflow
from actors.definitions import parse_workflow, validate_inputs
from actors.definitions.input_schema import check_schema, coerce, problems
from actors.definitions.mapping import definition_mapping
from events.errors import InvalidWorkflow
from sdk.builder import Input, Workflow
from sdk.cli.run import parse_inputs
from tests.unit.given_when_then import T0
from tests.unit.test_workflow_actor import WF, WFA

TYPED = parse_workflow(
    {
        "name": "typed",
        "inputs": {
            "count": {"type": "integer", "minimum": 1, "default": 3},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["fast", "safe"], "description": "how"},
            "name": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
            "target": {
                "type": "object",
                "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
                "required": ["host"],
                "additionalProperties": False,
            },
            "ratio": {"type": ["number", "null"], "maximum": 1},
        },
        "jobs": {"a": {"run": "echo ${{ inputs.count }}"}},
    }
)


def messages(value: Any, schema: dict[str, Any]) -> list[str]:
    return [f"{list(path)} {message}" for path, message in problems(value, schema)]


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        (3, {"type": "integer", "minimum": 1}, []),
        (-1, {"type": "integer", "minimum": 1}, ["[] -1 is less than the minimum 1"]),
        (3.0, {"type": "integer"}, []),
        (3.5, {"type": "integer"}, ["[] expected an integer, got 3.5"]),
        (True, {"type": "integer"}, ["[] expected an integer, got true"]),
        ("3", {"type": "number"}, ['[] expected a number, got "3"']),
        (11, {"maximum": 10}, ["[] 11 is more than the maximum 10"]),
        ("slow", {"enum": ["fast", "safe"]}, ['[] "slow" is not one of "fast", "safe"']),
        (1, {"enum": [True]}, ["[] 1 is not one of true"]),
        ("a", {"minLength": 2}, ['[] "a" is shorter than 2 characters']),
        ("abc", {"maxLength": 2}, ['[] "abc" is longer than 2 characters']),
        ("A1", {"pattern": "^[a-z]+$"}, ["[] \"A1\" does not match the pattern '^[a-z]+$'"]),
        (
            ["a", 3],
            {"type": "array", "items": {"type": "string"}},
            ["[1] expected a string, got 3"],
        ),
        ([], {"minItems": 1}, ["[] has 0 item(s), fewer than 1"]),
        (
            {"port": "80", "x": 1},
            {
                "type": "object",
                "properties": {"port": {"type": "integer"}},
                "required": ["host"],
                "additionalProperties": False,
            },
            [
                "['host'] required property is missing",
                "['port'] expected an integer, got \"80\"",
                "['x'] unknown property (known: port)",
            ],
        ),
        (None, {"type": ["string", "null"]}, []),
        ({}, {"type": "boolean"}, ["[] expected true or false, got {}"]),
    ],
)
def test_values_against_the_subset(value: Any, schema: dict[str, Any], expected: list[str]) -> None:
    assert messages(value, schema) == expected


def test_a_schema_that_is_itself_wrong_is_located() -> None:
    found = check_schema(
        {"type": "int", "minimum": "1", "pattern": "(", "items": {"format": "x"}, "oneOf": []}
    )
    assert [(list(path), message.split(" (")[0].split(",")[0]) for path, message in found] == [
        (["type"], "expected one of string"),
        (["minimum"], "expected a number"),
        (["pattern"], "not a regular expression: missing )"),
        (["items", "format"], "unknown schema keyword"),
        (["oneOf"], "unknown schema keyword"),
    ]


def test_a_start_with_bad_inputs_is_refused_with_every_problem_located() -> None:
    given = {
        "count": -1,
        "tags": ["a", 3],
        "mode": "slow",
        "name": "X",
        "target": {"port": "80"},
        "ratio": 2,
    }
    with pytest.raises(InvalidWorkflow) as info:
        validate_inputs(TYPED, given)
    assert info.value.problems == [
        "inputs.count: -1 is less than the minimum 1",
        "inputs.tags[1]: expected a string, got 3",
        'inputs.mode: "slow" is not one of "fast", "safe"',
        'inputs.name: "X" is shorter than 2 characters',
        "inputs.name: \"X\" does not match the pattern '^[a-z]+$'",
        "inputs.target.host: required property is missing",
        'inputs.target.port: expected an integer, got "80"',
        "inputs.ratio: 2 is more than the maximum 1",
    ]
    # The workflow actor refuses the same start: nothing is recorded, nothing runs.
    command = StartWorkflow(workflow_id=WF, definition=TYPED, inputs=given, now=T0)
    WFA.given().when(command).then_raises(InvalidWorkflow, "inputs.count: -1 is less")


def test_good_inputs_start_and_absent_optional_inputs_are_not_checked() -> None:
    values = validate_inputs(TYPED, {"tags": ["x"], "mode": "safe", "ratio": None})
    assert values["count"] == 3 and values["name"] is None


def test_the_definition_checks_its_schemas_and_defaults() -> None:
    raw = {
        "name": "x",
        "inputs": {
            "n": {"type": "integer", "minimum": 5, "default": 1},
            "m": {"type": "integr", "maxLen": 3},
        },
        "jobs": {"a": {"run": "echo"}},
    }
    with pytest.raises(InvalidWorkflow) as info:
        parse_workflow(raw)
    text = str(info.value)
    assert "inputs.n.default: 1 is less than the minimum 5" in text
    assert "inputs.m.type: expected one of string, integer" in text
    assert "inputs.m.maxLen: unknown field" in text or "inputs.m.maxLen" in text


def test_typed_inputs_survive_the_mapping_and_the_builder() -> None:
    assert parse_workflow(definition_mapping(TYPED)) == TYPED
    built = Workflow("b", inputs={"n": Input(type="integer", minimum=1, default=2)})
    built.input("mode", enum=["a", "b"], required=True)
    built.job("a", run="echo")
    inputs = built.build().inputs
    assert inputs["n"].json_schema == {"type": "integer", "minimum": 1}
    assert (inputs["mode"].required, inputs["mode"].json_schema) == (True, {"enum": ["a", "b"]})


@pytest.mark.parametrize(
    ("text", "schema", "expected"),
    [
        ("3", {"type": "integer"}, 3),
        ("3.0", {"type": "integer"}, 3),
        ("1.0", {"type": "string"}, "1.0"),
        ("true", {"type": "string"}, "true"),
        ("true", {"type": "boolean"}, True),
        ('["a"]', {"type": "array"}, ["a"]),
        ("x", {"type": "integer"}, "x"),  # left as text: validation says why
        ("3", {"type": ["integer", "string"]}, 3),
        ("1", {"enum": [1, "2"]}, 1),
        ("2", {"enum": [1, "2"]}, "2"),
        ("3", {}, 3),
        ("v1", {}, "v1"),
    ],
)
def test_command_line_text_is_read_as_the_declared_type(
    text: str, schema: dict[str, Any], expected: Any
) -> None:
    assert coerce(text, schema) == expected
    assert type(coerce(text, schema)) is type(expected)


def test_run_inputs_are_coerced_by_the_definition() -> None:
    assert parse_inputs(["count=3", "name=007"], TYPED) == {"count": 3, "name": "007"}
    assert parse_inputs(["name=7"]) == {"name": 7}  # without a definition: JSON when it reads
