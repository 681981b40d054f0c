"""``${{ expr }}`` substitution in ``run``, ``env`` and ``with`` values.

Each ``${{ ... }}`` is replaced by its expression's value as text: ``null`` -> ``''``, booleans ->
``true``/``false``, whole numbers without ``.0``, objects and arrays as compact JSON. The closing
``}}`` is found outside single-quoted strings, so ``${{ format('{{0}}') }}`` reads correctly.
There is no escape for a literal ``${{``; write ``${{ '${{' }}``, as in GitHub.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.definitions._expr_runtime import to_text
from actors.definitions._expr_tokens import ExpressionError
from actors.definitions.expressions import (
    ExpressionContext,
    check_expression,
    evaluate,
    referenced_jobs,
    referenced_paths,
)

__all__ = [
    "check_template",
    "render",
    "template_expressions",
    "template_paths",
    "template_references",
]

_OPEN = "${{"
_CLOSE = "}}"


@dataclass(frozen=True)
class _Piece:
    text: str  # literal text, or the expression between ${{ and }}
    is_expression: bool


def render(template: str, ctx: ExpressionContext) -> str:
    """``template`` with every ``${{ expr }}`` replaced; raises ``ExpressionError``."""
    return "".join(
        to_text(evaluate(piece.text, ctx)) if piece.is_expression else piece.text
        for piece in _split(template)
    )


def template_expressions(template: str) -> list[str]:
    """The expressions inside ``${{ }}`` in ``template``, in order; raises ``ExpressionError``."""
    return [piece.text for piece in _split(template) if piece.is_expression]


def template_references(template: str) -> set[str]:
    """Jobs named as ``needs.<job>...`` anywhere in ``template``; raises ``ExpressionError``."""
    return {job for expr in template_expressions(template) for job in referenced_jobs(expr)}


def template_paths(template: str) -> set[tuple[str, ...]]:
    """Constant member paths used in ``template`` (see ``expressions.referenced_paths``)."""
    return {path for expr in template_expressions(template) for path in referenced_paths(expr)}


def check_template(template: str) -> list[str]:
    """Every problem with the ``${{ }}`` parts of ``template``, or ``[]``."""
    try:
        expressions = template_expressions(template)
    except ExpressionError as error:
        return [str(error)]
    return [problem for expr in expressions for problem in check_expression(expr)]


def _split(template: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    position = 0
    while (start := template.find(_OPEN, position)) != -1:
        if start > position:
            pieces.append(_Piece(template[position:start], is_expression=False))
        end = _closing(template, start + len(_OPEN))
        if end == -1:
            raise ExpressionError(
                f"'${{{{' at column {start + 1} is never closed: add '}}}}' after the expression"
            )
        pieces.append(_Piece(template[start + len(_OPEN) : end], is_expression=True))
        position = end + len(_CLOSE)
    if position < len(template):
        pieces.append(_Piece(template[position:], is_expression=False))
    return pieces


def _closing(template: str, position: int) -> int:
    """Index of the ``}}`` ending the expression that starts at ``position``, or -1."""
    in_string = False
    while position < len(template):
        char = template[position]
        if in_string:
            # A doubled quote stays inside the string; a single one ends it.
            if char == "'" and template.startswith("''", position):
                position += 2
                continue
            in_string = char != "'"
        elif char == "'":
            in_string = True
        elif template.startswith(_CLOSE, position):
            return position
        position += 1
    return -1
