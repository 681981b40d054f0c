"""Properties: parsing never fails except with located problems; durations round-trip."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.definitions import (
    ExpressionContext,
    ExpressionError,
    check_expression,
    check_template,
    evaluate,
    format_duration,
    load_workflow_text,
    parse_duration,
    parse_workflow,
    render,
)
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow

# `<location>: <message>`, the location optionally preceded by `<source>:<line> `.
LOCATED = re.compile(
    r"^(?:\S+:\d+ )?(?:workflow|[A-Za-z0-9_-]+|\[.+?\])(?:\.[A-Za-z0-9_-]+|\[.+?\])*: \S",
    re.DOTALL,
)
# Unreadable YAML is one problem located by line and column, or by the file alone.
YAML_ERROR = re.compile(r"^t\.yaml(?::\d+:\d+ |: )(?:malformed YAML|nested too deeply)")
FIELD_NAMES = [
    "name", "inputs", "env", "timeout", "dispatch_timeout", "jobs", "run", "uses", "with",
    "labels", "needs", "needs_any", "if", "retry", "on_failure", "delay", "at", "max_attempts",
    "backoff", "max_delay", "default", "required", "description",
]  # fmt: skip
JOB_NAMES = ["a", "b", "c", "build-1", "bad name"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["1s", "5m", "500ms", "x", "${{ needs.a.outputs.x }}", "${{", "always()"])
)
keys = st.sampled_from(FIELD_NAMES + JOB_NAMES) | st.text(max_size=10) | st.integers()
anything = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)
job_name = st.sampled_from(JOB_NAMES)
expression_text = st.sampled_from(
    [
        "always()",
        "needs.a.result == 'success'",
        "${{ inputs.v }} x",
        "${{ needs.b.outputs.k }}",
        "inputs.v && !failure()",
        "${{ nope",
        "needs.zz.result",
        "",
    ]
)
job_fields: dict[str, st.SearchStrategy[Any]] = {
    "run": expression_text | scalars,
    "uses": st.sampled_from(["handler", ""]),
    "with": st.dictionaries(st.text(max_size=5), expression_text | scalars, max_size=3),
    "labels": st.lists(st.sampled_from(["linux", "gpu", "bad label"]), max_size=3),
    "needs": st.lists(job_name, max_size=3) | job_name,
    "needs_any": st.lists(job_name, max_size=3),
    "if": expression_text | st.booleans(),
    "env": st.dictionaries(st.sampled_from(["A", "B", "1X"]), expression_text | scalars),
    "timeout": st.sampled_from(["1s", "10m", 0, -1, 2.5, "soon"]),
    "dispatch_timeout": st.sampled_from(["30s", "500ms", 0, -1, "never"]),
    "retry": st.integers(-1, 4)
    | st.fixed_dictionaries(
        {},
        optional={
            "max_attempts": st.integers(-1, 5),
            "backoff": st.sampled_from(["none", "fixed", "exponential", "linear", "odd"]),
            "delay": st.sampled_from(["1s", 0, "x"]),
            "max_delay": st.sampled_from(["10s", "1ms"]),
        },
    ),
    "on_failure": st.sampled_from(["continue", "fail_workflow", "retry_forever", "stop"]),
    "delay": st.sampled_from(["5s", 0, "-1s"]),
    "at": st.sampled_from(["2026-12-01T08:00:00Z", "2026-12-01T08:00:00", "later"]),
}
plausible_workflow = st.fixed_dictionaries(
    {"name": st.sampled_from(["wf", "bad name"]), "jobs": st.dictionaries(
        job_name, st.fixed_dictionaries({}, optional=job_fields) | anything, max_size=4
    )},
    optional={
        "inputs": st.dictionaries(
            st.sampled_from(["v", "w"]),
            st.fixed_dictionaries(
                {}, optional={"default": scalars, "required": st.booleans() | scalars}
            )
            | anything,
            max_size=2,
        ),
        "env": st.dictionaries(st.sampled_from(["A", "B"]), expression_text | scalars),
        "timeout": st.sampled_from(["1h", 0, "x"]),
        "dispatch_timeout": st.sampled_from(["5m", 0, "x"]),
    },
)  # fmt: skip


def outcome(raw: Any) -> WorkflowDefinition | list[str]:
    try:
        return parse_workflow(raw)
    except InvalidWorkflow as error:
        return error.problems


def assert_located(problems: list[str]) -> None:
    assert problems
    for problem in problems:
        assert LOCATED.match(problem), problem


@settings(max_examples=300, deadline=None)
@given(anything)
def test_arbitrary_data_gives_a_definition_or_located_problems(raw: Any) -> None:
    result = outcome(raw)
    if isinstance(result, list):
        assert_located(result)


@settings(max_examples=300, deadline=None)
@given(plausible_workflow)
def test_plausible_workflows_give_a_definition_or_located_problems(raw: Any) -> None:
    result = outcome(raw)
    if isinstance(result, list):
        assert_located(result)
    else:
        assert set(result.jobs) <= set(raw["jobs"])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.sampled_from(["name: x\njobs: {a: {run: b}}", "a: &a [*a]"]))
def test_arbitrary_text_gives_a_definition_or_located_problems(text: str) -> None:
    try:
        load_workflow_text(text, source="t.yaml")
        return
    except InvalidWorkflow as error:
        problems = error.problems
    if YAML_ERROR.match(problems[0]):
        assert len(problems) == 1
    else:
        assert_located(problems)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 8))
    jobs: dict[str, Any] = {}
    for index in range(count):
        earlier = [f"j{i}" for i in range(index)]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        jobs[f"j{index}"] = {"run": "true", "needs": needs}
    return {"name": "dag", "jobs": jobs}


@given(dags())
def test_acyclic_graphs_are_valid(raw: dict[str, Any]) -> None:
    assert isinstance(parse_workflow(raw), WorkflowDefinition)


@given(dags().filter(lambda raw: len(raw["jobs"]) >= 2))
def test_an_edge_back_to_the_start_is_a_cycle(raw: dict[str, Any]) -> None:
    last = f"j{len(raw['jobs']) - 1}"
    raw["jobs"]["j0"]["needs"] = [last]
    raw["jobs"][last]["needs"] = list({*raw["jobs"][last]["needs"], "j0"})
    problems = outcome(raw)
    assert isinstance(problems, list)
    assert len(problems) == 1
    assert "dependency cycle j0 -> " in problems[0]
    assert problems[0].startswith("jobs.j0.needs[0]: ")


@given(st.integers(min_value=0, max_value=10**13))
def test_durations_round_trip_through_text(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == seconds


units = st.sampled_from(["d", "h", "m", "s", "ms"])


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), units), min_size=1, max_size=5, unique_by=lambda p: p[1]
    )
)
def test_compound_durations_format_back_to_the_same_value(parts: list[tuple[int, str]]) -> None:
    order = ["d", "h", "m", "s", "ms"]
    text = "".join(f"{n}{unit}" for n, unit in sorted(parts, key=lambda p: order.index(p[1])))
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_numbers_are_their_own_duration(seconds: float) -> None:
    assert parse_duration(seconds) == seconds
    assert parse_duration(repr(seconds)) == seconds if "e" not in repr(seconds) else True


CTX = ExpressionContext(
    needs={"a": {"result": "success", "outputs": {"x": "1", "o": {"k": [1]}}}},
    inputs={"v": "text", "n": 2},
    env={"E": "e"},
)
expression_tokens = st.sampled_from(
    ["needs", "inputs", "env", ".", "a", "x", "v", "[", "]", "(", ")", "'s'", "1", "-", "!",
     "==", "!=", "<", ">=", "&&", "||", "true", "null", "success()", "contains", ",", " ",
     "fromJSON", "'[1]'", "format", "'{0}'", "toJSON", "o", "k", "outputs", "result"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(expression_tokens, max_size=12).map("".join) | st.text(max_size=40))
def test_expressions_fail_only_with_expression_errors(expr: str) -> None:
    problems = check_expression(expr)
    try:
        evaluate(expr, CTX)
    except ExpressionError:
        return
    assert problems == []


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=60)
    | st.lists(st.sampled_from(["${{", "}}", " inputs.v ", "'", "x"])).map("".join)
)
def test_templates_fail_only_with_expression_errors(template: str) -> None:
    problems = check_template(template)
    try:
        rendered = render(template, CTX)
    except ExpressionError:
        assert problems
        return
    assert problems == []
    assert isinstance(rendered, str)
