"""``${{ }}`` templates: substitution, text forms of values, scanning, checks and references."""

from __future__ import annotations

import pytest

from actors.definitions import (
    ExpressionContext,
    ExpressionError,
    check_template,
    render,
    template_expressions,
    template_paths,
    template_references,
)

CTX = ExpressionContext(
    needs={"build": {"result": "success", "outputs": {"artifact": "dist/app-0.1.0.tar.gz"}}},
    inputs={"version": "0.1.0", "n": 3, "ratio": 0.5, "big": 1e20, "on": True, "data": {"a": [1]}},
    env={"REGION": "eu"},
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("no templates here", "no templates here"),
        ("", ""),
        ("./test.sh ${{ needs.build.outputs.artifact }}", "./test.sh dist/app-0.1.0.tar.gz"),
        (
            'make && echo "::set-output artifact=dist/app-${{ inputs.version }}.tar.gz"',
            'make && echo "::set-output artifact=dist/app-0.1.0.tar.gz"',
        ),
        ("${{inputs.version}}-${{ env.REGION }}", "0.1.0-eu"),
        ("[${{ needs.build.outputs.missing }}]", "[]"),  # null renders as nothing
        ("${{ inputs.on }} ${{ !inputs.on }}", "true false"),
        ("${{ inputs.n }} ${{ inputs.ratio }} ${{ 2.0 }}", "3 0.5 2"),
        ("${{ inputs.big }}", "1e+20"),
        ("${{ inputs.data }}", '{"a":[1]}'),
        ("${{ format('{{0}}') }}", "{0}"),  # }} inside a string does not close the template
        ("${{ 'it''s }}' }}", "it's }}"),
        ("${{ '${{' }} literal", "${{ literal"),
        ("$ {{ not a template }}", "$ {{ not a template }}"),
        ("${{ needs.build.result == 'success' }}", "true"),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_render_raises_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="unknown name 'nope'"):
        render("${{ nope }}", CTX)
    with pytest.raises(ExpressionError, match="never closed"):
        render("echo ${{ inputs.version", CTX)


def test_template_expressions_in_order() -> None:
    template = "a ${{ inputs.version }} b ${{ needs.build.result }}"
    assert template_expressions(template) == [" inputs.version ", " needs.build.result "]


def test_template_references_name_jobs() -> None:
    template = "${{ needs.build.outputs.a }} ${{ needs['lint'].result }} ${{ inputs.x }}"
    assert template_references(template) == {"build", "lint"}
    assert template_references("plain") == set()


def test_template_paths() -> None:
    assert ("inputs", "x") in template_paths("${{ inputs.x }}")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("echo ${{ inputs.version", "'${{' at column 6 is never closed"),
        ("${{ }}", "empty expression"),
        ("ok ${{ inputs.a }} bad ${{ 1 + }}", "unexpected character '+'"),
        ("${{ ${{ inputs.a }} }}", "${{ }} cannot be nested"),
        ('${{ "x" }}', "strings use single quotes"),
    ],
)
def test_check_template_reports_problems(template: str, reason: str) -> None:
    problems = check_template(template)
    assert len(problems) == 1
    assert reason in problems[0]


def test_check_template_reports_every_bad_expression() -> None:
    assert len(check_template("${{ a }} ${{ b }} ${{ inputs.ok }}")) == 2


def test_check_template_accepts_good_templates() -> None:
    assert check_template("echo ${{ needs.build.outputs.artifact }} ${{ always() }}") == []
