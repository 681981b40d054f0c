"""Reading GitHub-flavoured expressions and translating them into Python for simpleeval.

The GitHub grammar differs from Python in ways a text substitution cannot bridge: ``!`` binds
tighter than ``==`` (``not`` binds looser), ``<`` binds tighter than ``==`` (Python chains them),
and member names may contain ``-`` or start with a digit (``needs.build-linux.result``). So a small
recursive-descent parser reads the expression and emits a fully parenthesised Python expression in
which every member access is a subscript (``needs['build-linux']['result']``). The evaluator never
sees an attribute access, an arithmetic operator or a name that the parser did not put there.

Precedence, loosest first: ``||``, ``&&``, ``== !=``, ``< <= > >=``, ``!``, then ``.``/``[]``/calls.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from actors.definitions._expr_tokens import ExpressionError, Token, fail, shorten, tokenize

# ``loop`` and ``outputs``: in loops (actors.loops); ``vars``: workflow variables.
CONTEXTS: Final = frozenset({"needs", "inputs", "env", "vars", "loop", "outputs"})
# A fanned-out job's instance also reads these (``actors.definitions._fanout`` checks where).
FAN_OUT_CONTEXTS: Final = frozenset({"matrix", "item", "index"})
STATUS_FUNCTIONS: Final = frozenset({"success", "failure", "always", "cancelled"})
# Canonical spelling -> (fewest, most) arguments; None means any number. Names match case-blind.
FUNCTION_ARITY: Final[dict[str, tuple[int, int | None]]] = {
    "success": (0, 0),
    "failure": (0, 0),
    "always": (0, 0),
    "cancelled": (0, 0),
    "contains": (2, 2),
    "startsWith": (2, 2),
    "endsWith": (2, 2),
    "format": (1, None),
    "join": (1, 2),
    "toJSON": (1, 1),
    "fromJSON": (1, 1),
}
_CANONICAL_FUNCTION: Final = {name.lower(): name for name in FUNCTION_ARITY}
_GITHUB_ONLY_CONTEXTS: Final = frozenset(
    {"github", "steps", "secrets", "runner", "job", "jobs", "strategy"}
)
_PYTHON_WORDS: Final = {"and": "&&", "or": "||", "not": "!"}
_MAX_DEPTH: Final = 64


@dataclass(frozen=True)
class Compiled:
    """An expression read once: its Python translation and what it refers to."""

    source: str
    python: str
    tree: ast.expr
    # Member paths with constant names from a context, e.g. ("needs", "build", "outputs", "x").
    # Every prefix is included; dynamic indexes (``needs[inputs.job]``) end a path.
    references: frozenset[tuple[str, ...]]
    functions: frozenset[str]


def unwrap(expr: str) -> str:
    """``${{ x }}`` -> ``x``; a bare expression is returned as is."""
    stripped = expr.strip()
    if stripped.startswith("${{") and stripped.endswith("}}"):
        inner = stripped[3:-2]
        if "${{" not in inner:
            return inner
    return expr


@functools.lru_cache(maxsize=2048)
def compile_expression(expr: str, extra: frozenset[str] = frozenset()) -> Compiled:
    """Read ``expr`` (bare or wrapped in ``${{ }}``); raises ``ExpressionError``.

    ``extra``: contexts readable besides ``CONTEXTS`` (an http step's ``poll.until`` reads
    ``response``).
    """
    source = unwrap(expr)
    parser = _Parser(source, tokenize(source), extra=extra)
    python = parser.parse()
    try:
        tree = ast.parse(python, mode="eval").body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        # Only reachable through extreme nesting such as hundreds of chained comparisons.
        shown = shorten(source.strip())
        raise ExpressionError(f"expression {shown!r} is nested too deeply") from None
    return Compiled(
        source=source,
        python=python,
        tree=tree,
        references=frozenset(parser.references),
        functions=frozenset(parser.functions),
    )


def _number_literal(value: int | float) -> str:
    if isinstance(value, float) and value != value:  # NaN has no literal; cannot come from text
        return "None"
    if value in (float("inf"), float("-inf")):
        return "1e999" if value > 0 else "-1e999"
    return repr(value)


@dataclass
class _Value:
    python: str
    path: tuple[str, ...] | None = None  # a constant member path from a context
    constant: str | None = None  # a string literal's value, so ``x['name']`` extends a path


_Operand = Callable[[], _Value]


@dataclass
class _Parser:
    source: str
    tokens: list[Token]
    position: int = 0
    depth: int = 0
    references: set[tuple[str, ...]] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    extra: frozenset[str] = frozenset()

    def parse(self) -> str:
        if self.peek().kind == "end":
            raise fail(self.source, 1, "empty expression")
        value = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise fail(
                self.source, token.column, f"unexpected {token.text!r} after a complete expression"
            )
        return value.python

    # --- token helpers -------------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.position]

    def take(self) -> Token:
        token = self.tokens[self.position]
        if token.kind != "end":
            self.position += 1
        return token

    def at_op(self, *texts: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in texts

    def expect_op(self, text: str, what: str) -> None:
        token = self.peek()
        if not self.at_op(text):
            found = "the end" if token.kind == "end" else repr(token.text)
            raise fail(self.source, token.column, f"expected {text!r} {what}, found {found}")
        self.take()

    # --- grammar -------------------------------------------------------------------------
    def parse_or(self) -> _Value:
        return self.parse_logical("||", "or", self.parse_and)

    def parse_and(self) -> _Value:
        return self.parse_logical("&&", "and", self.parse_equality)

    def parse_logical(self, symbol: str, word: str, operand: _Operand) -> _Value:
        # Emitted flat, `(a and b and c)`, so long chains do not nest.
        items = [operand()]
        while self.at_op(symbol):
            self.take()
            items.append(operand())
        if len(items) == 1:
            return items[0]
        return _Value("(" + f" {word} ".join(item.python for item in items) + ")")

    def parse_equality(self) -> _Value:
        return self.parse_comparison(("==", "!="), self.parse_relation)

    def parse_relation(self) -> _Value:
        return self.parse_comparison(("<", "<=", ">", ">="), self.parse_unary)

    def parse_comparison(self, operators: tuple[str, ...], operand: _Operand) -> _Value:
        left = operand()
        while self.at_op(*operators):
            operator = self.take().text
            right = operand()
            # Parenthesised pairwise: GitHub's `a == b == c` is `(a == b) == c`, never a chain.
            left = _Value(f"({left.python} {operator} {right.python})")
        return left

    def parse_unary(self) -> _Value:
        token = self.peek()
        if self.at_op("!"):
            self.take()
            with self.nested(token):
                operand = self.parse_unary()
            return _Value(f"(not {operand.python})")
        if self.at_op("-"):
            self.take()
            number = self.take()
            if number.kind != "number":
                raise fail(self.source, token.column, "'-' must be followed by a number")
            return _Value(f"({_number_literal(-number.number)})")
        return self.parse_postfix()

    def parse_postfix(self) -> _Value:
        value = self.parse_primary()
        while self.at_op(".", "["):
            if self.take().text == ".":
                name = self.take()
                if name.kind != "property":  # only at the end: the tokenizer checks the rest
                    raise fail(self.source, name.column, "expected a property name after '.'")
                value = self.member(value, name.text)
                continue
            with self.nested(self.peek()):
                index = self.parse_or()
            self.expect_op("]", "to close the index")
            if index.constant is not None:
                value = self.member(value, index.constant)
            else:
                value = _Value(f"{value.python}[{index.python}]")
        return value

    def member(self, value: _Value, name: str) -> _Value:
        path = (*value.path, name) if value.path is not None else None
        if path is not None:
            self.references.add(path)
        return _Value(f"{value.python}[{name!r}]", path=path)

    def parse_primary(self) -> _Value:
        token = self.take()
        if token.kind == "string":
            return _Value(repr(token.string), constant=token.string)
        if token.kind == "number":
            return _Value(_number_literal(token.number))
        if token.kind == "ident":
            return self.parse_name(token)
        if token.kind == "op" and token.text == "(":
            with self.nested(token):
                inner = self.parse_or()
            self.expect_op(")", "to close the parenthesis")
            return _Value(f"({inner.python})", path=inner.path)
        found = "the end of the expression" if token.kind == "end" else repr(token.text)
        raise fail(self.source, token.column, f"expected a value, found {found}")

    def parse_name(self, token: Token) -> _Value:
        lower = token.text.lower()
        if self.at_op("("):
            return self.parse_call(token)
        if lower in ("true", "false", "null"):
            return _Value({"true": "True", "false": "False", "null": "None"}[lower])
        if lower in CONTEXTS or lower in FAN_OUT_CONTEXTS or lower in self.extra:
            self.references.add((lower,))
            return _Value(lower, path=(lower,))
        raise fail(self.source, token.column, _unknown_name_reason(token.text))

    def parse_call(self, token: Token) -> _Value:
        name = _CANONICAL_FUNCTION.get(token.text.lower())
        if name is None:
            known = ", ".join(f"{n}()" for n in FUNCTION_ARITY)
            raise fail(
                self.source, token.column, f"unknown function {token.text}(); known: {known}"
            )
        self.take()  # "("
        arguments: list[str] = []
        with self.nested(token):
            while not self.at_op(")"):
                if arguments:
                    self.expect_op(",", "between arguments")
                arguments.append(self.parse_or().python)
        self.expect_op(")", f"to close the call to {name}()")
        fewest, most = FUNCTION_ARITY[name]
        if len(arguments) < fewest or (most is not None and len(arguments) > most):
            wanted = (
                str(fewest)
                if fewest == most
                else f"{fewest} or more"
                if most is None
                else (f"{fewest} to {most}")
            )
            reason = f"{name}() takes {wanted} argument(s), got {len(arguments)}"
            raise fail(self.source, token.column, reason)
        self.functions.add(name)
        return _Value(f"{name}({', '.join(arguments)})")

    def nested(self, token: Token) -> _Nesting:
        return _Nesting(self, token)


class _Nesting:
    """Bounds recursion so that a pathological expression is a problem, not a RecursionError."""

    def __init__(self, parser: _Parser, token: Token) -> None:
        self.parser = parser
        self.token = token

    def __enter__(self) -> None:
        self.parser.depth += 1
        if self.parser.depth > _MAX_DEPTH:
            raise fail(self.parser.source, self.token.column, "expression is nested too deeply")

    def __exit__(self, *_: object) -> None:
        self.parser.depth -= 1


def _unknown_name_reason(text: str) -> str:
    lower = text.lower()
    if lower in _CANONICAL_FUNCTION:
        return f"{text} is a function: call it as {text}()"
    if lower in _PYTHON_WORDS:
        return f"unknown name {text!r}: write {_PYTHON_WORDS[lower]} instead"
    if lower in _GITHUB_ONLY_CONTEXTS:
        return f"the {text!r} context does not exist in jetwork; use needs, inputs, env or vars"
    return (
        f"unknown name {text!r}: use needs.<job>, inputs.<name>, env.<NAME>, vars.<name> or a "
        "literal"
    )
