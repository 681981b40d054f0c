"""GitHub-flavoured expressions: values, precedence, coercion, functions, errors, references."""

from __future__ import annotations

import re
from typing import Any

import pytest

from actors.definitions import (
    ExpressionContext,
    ExpressionError,
    check_expression,
    evaluate,
    evaluate_condition,
    referenced_jobs,
    referenced_paths,
    uses_status_function,
)

CTX = ExpressionContext(
    needs={
        "build": {"result": "success", "outputs": {"artifact": "dist/app.tgz", "count": "3"}},
        "build-linux": {"result": "failure", "outputs": {}},
        "1st": {"result": "skipped", "outputs": {"Mixed": "case"}},
    },
    inputs={"version": "0.1.0", "flag": False, "n": 2, "list": ["a", "b"]},
    env={"REGION": "eu"},
)


def value(expr: str, ctx: ExpressionContext = CTX) -> Any:
    return evaluate(expr, ctx)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("needs.build.result", "success"),
        ("needs.build.outputs.artifact", "dist/app.tgz"),
        ("needs.build-linux.result", "failure"),
        ("needs.1st.result", "skipped"),
        ("needs['build'].outputs['count']", "3"),
        ("needs.1st.outputs.mixed", "case"),  # property names match without regard to case
        ("inputs.version", "0.1.0"),
        ("inputs['list'][1]", "b"),
        ("env.REGION", "eu"),
        ("needs.missing.outputs.x", None),
        ("needs.build.outputs.missing", None),
        ("inputs.list[5]", None),
        ("inputs.version.length", None),
        ("inputs.__class__.__bases__", None),
    ],
)
def test_member_access(expr: str, expected: Any) -> None:
    assert value(expr) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("'it''s'", "it's"),
        ("'a && b != c'", "a && b != c"),
        ("42", 42),
        ("-1.5", -1.5),
        ("0x1F", 31),
        ("1e3", 1000.0),
        ("true", True),
        ("FALSE", False),
        ("null", None),
        ("${{ 'wrapped' }}", "wrapped"),
        ("  ${{ 1 }}  ", 1),
    ],
)
def test_literals(expr: str, expected: Any) -> None:
    assert value(expr) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("needs.build.result == 'SUCCESS'", True),  # strings compare without case
        ("needs.build.result != 'success'", False),
        ("needs.build.outputs.count == 3", True),  # text and number compare as numbers
        ("needs.build.outputs.count > 2", True),
        ("'abc' == 0", False),  # NaN equals nothing
        ("'abc' != 'abc' || fromJSON('NaN') != fromJSON('NaN')", True),
        ("null == ''", True),
        ("null == 0", True),
        ("true == 1", True),
        ("'1' == true", True),
        ("'a' < 'B'", True),
        ("inputs.n >= 2 && inputs.n <= 2", True),
        ("fromJSON('{}') == fromJSON('{}')", False),  # objects are equal only to themselves
        ("inputs.list < 3", False),
    ],
)
def test_comparisons_follow_github(expr: str, expected: bool) -> None:
    assert value(expr) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("!inputs.flag", True),
        ("!inputs.flag == true", True),  # `!` binds tighter than `==`
        ("!(inputs.flag == true)", True),
        ("!!inputs.version", True),
        ("1 < 2 == true", True),  # `<` binds tighter than `==`, and nothing chains
        ("inputs.flag || 'fallback'", "fallback"),  # || returns the deciding operand
        ("inputs.version && 'yes'", "yes"),
        ("inputs.flag && 'never'", False),
        ("fromJSON('[]') && 'arrays are truthy'", "arrays are truthy"),
        ("'' || 0 || null", None),
        ("true || false && false", True),  # && binds tighter than ||
        ("(true || false) && false", False),
        ("needs.build.result == 'success' && !cancelled()", True),
    ],
)
def test_logic_and_precedence(expr: str, expected: Any) -> None:
    assert value(expr) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("contains('Hello World', 'world')", True),
        ("contains(inputs.list, 'A')", True),
        ("contains(inputs.list, 'c')", False),
        ("startsWith(inputs.version, '0.')", True),
        ("endsWith(needs.build.outputs.artifact, '.TGZ')", True),
        ("format('{0}/{1} {{0}}', env.REGION, inputs.version)", "eu/0.1.0 {0}"),
        ("join(inputs.list)", "a,b"),
        ("join(inputs.list, ' + ')", "a + b"),
        ("join('solo')", "solo"),
        ("toJSON(inputs.list)", '[\n  "a",\n  "b"\n]'),
        ("fromJSON('{\"a\": [1, 2]}').a[1]", 2),
        ("success()", True),
        ("always()", True),
        ("failure()", False),
        ("cancelled()", False),
        ("SUCCESS()", True),  # function names match without case
    ],
)
def test_functions(expr: str, expected: Any) -> None:
    assert value(expr) == expected


def test_status_functions_read_the_context() -> None:
    failed = ExpressionContext(needs={}, inputs={}, success=False, failure=True)
    assert value("failure() && !success()", failed) is True
    stopped = ExpressionContext(needs={}, inputs={}, success=False, cancelled=True)
    assert value("cancelled()", stopped) is True


class TestConditions:
    failed = ExpressionContext(needs={}, inputs={"go": True}, success=False, failure=True)

    def test_none_and_blank_mean_success(self) -> None:
        assert evaluate_condition(None, CTX) is True
        assert evaluate_condition("  ", CTX) is True
        assert evaluate_condition(None, self.failed) is False

    def test_without_a_status_function_success_is_implied(self) -> None:
        assert evaluate_condition("inputs.go", self.failed) is False
        assert evaluate_condition("${{ inputs.go }}", self.failed) is False

    def test_a_status_function_replaces_the_implied_success(self) -> None:
        assert evaluate_condition("always()", self.failed) is True
        assert evaluate_condition("${{ failure() && inputs.go }}", self.failed) is True
        assert evaluate_condition("success() || inputs.go", self.failed) is True

    def test_results_are_booleans_by_github_truthiness(self) -> None:
        assert evaluate_condition("inputs.version", CTX) is True
        assert evaluate_condition("inputs.flag", CTX) is False
        assert evaluate_condition("needs.nope.result", CTX) is False
        assert evaluate_condition("fromJSON('{}')", CTX) is True

    def test_conditions_over_outputs_and_results(self) -> None:
        expr = "needs.build.outputs.count > 2 && needs.build-linux.result == 'failure'"
        assert evaluate_condition(expr, CTX) is True


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "empty expression (column 1"),
        ("   ", "empty expression"),
        ("foo", "unknown name 'foo'"),
        ("github.sha", "the 'github' context does not exist"),
        ("success", "success is a function: call it as success()"),
        ("a and b", "unknown name 'a'"),
        ("inputs.x and inputs.y", "unexpected 'and' after a complete expression"),
        ("not inputs.x", "unknown name 'not': write ! instead"),
        ("nope()", "unknown function nope()"),
        ("__import__('os')", "unknown function __import__()"),
        ("success(1)", "success() takes 0 argument(s), got 1"),
        ("contains('a')", "contains() takes 2 argument(s), got 1"),
        ("join()", "join() takes 1 to 2 argument(s), got 0"),
        ("format()", "format() takes 1 or more argument(s), got 0"),
        ('"double"', "strings use single quotes, like 'text' (column 1"),
        ("inputs.a = 1", "compare with == (column 10"),
        ("inputs.a & 1", "write && for 'and'"),
        ("inputs.a | 1", "write || for 'or'"),
        ("1 + 1", "unexpected character '+'"),
        ("'open", "unterminated string"),
        ("(1", "expected ')' to close the parenthesis, found the end (column 3"),
        ("inputs.", "expected a property name after '.'"),
        ("inputs.'x'", "expected a property name after '.'"),
        ("needs.*.result", "object filters (.*) are not supported"),
        ("1abc", "malformed number '1a'"),
        ("[1, 2]", "expected a value, found '['"),
        ("1 == ", "expected a value, found the end of the expression (column 5"),
        ("- x", "'-' must be followed by a number"),
        ("${{ a }} && ${{ b }}", "${{ }} cannot be nested"),
        ("!" * 100 + "true", "nested too deeply"),
        ("1" + " == 1" * 400, "nested too deeply"),
        ("9" * 5000, "too many digits"),
        ("0x" + "f" * 4000, "too many digits"),
    ],
)
def test_syntax_errors_say_what_and_where(expr: str, reason: str) -> None:
    problems = check_expression(expr)
    assert len(problems) == 1
    assert reason in problems[0]
    with pytest.raises(ExpressionError, match=re.escape(reason)):
        evaluate(expr, CTX)


def test_messages_quote_a_shortened_expression() -> None:
    [problem] = check_expression("nope + " + "x" * 500)
    assert problem.endswith("...')")
    assert len(problem) < 200


def test_expression_error_is_a_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("fromJSON('{not json')", "fromJSON(): '{not json' is not JSON"),
        ("format('{1}', 'only one')", "format(): '{1}' in '{1}' does not name one of the 1"),
        ("format('{x}', 1)", "does not name one of the 1 argument(s)"),
    ],
)
def test_run_time_errors_are_expression_errors(expr: str, reason: str) -> None:
    assert check_expression(expr) == []
    with pytest.raises(ExpressionError) as caught:
        evaluate(expr, CTX)
    assert reason in str(caught.value)


def test_check_accepts_good_expressions() -> None:
    assert check_expression("${{ needs.build.outputs.x == inputs.y || always() }}") == []


def test_referenced_jobs() -> None:
    expr = "needs.build.result == 'success' && needs['test-1'].outputs.x || needs.lint"
    assert referenced_jobs(expr) == {"build", "test-1", "lint"}
    assert referenced_jobs("inputs.needs && always()") == set()
    assert referenced_jobs("needs[inputs.job].result") == set()  # dynamic: cannot be known


def test_referenced_paths_include_prefixes() -> None:
    paths = referenced_paths("needs.build.outputs.artifact")
    assert ("needs", "build", "outputs", "artifact") in paths
    assert ("needs", "build") in paths


@pytest.mark.parametrize(
    ("expr", "uses"),
    [
        ("always()", True),
        ("${{ failure() || inputs.x }}", True),
        ("!cancelled()", True),
        ("Success()", True),
        ("inputs.x == 'success()'", False),
        ("contains(inputs.x, 'y')", False),
    ],
)
def test_uses_status_function(expr: str, uses: bool) -> None:
    assert uses_status_function(expr) is uses


def test_context_env_defaults_to_empty() -> None:
    ctx = ExpressionContext(needs={}, inputs={})
    assert evaluate("env.HOME", ctx) is None
