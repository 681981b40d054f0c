"""Splitting a GitHub-flavoured expression into tokens, with column numbers for messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


class ExpressionError(ValueError):
    """An expression cannot be read or evaluated; the message says where and why."""


_NUMBER: Final = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PROPERTY: Final = re.compile(r"[A-Za-z0-9_-]+")
# Two-character operators first so that "<=" is not read as "<" followed by "=".
_OPERATORS: Final = ("==", "!=", "<=", ">=", "&&", "||", *"<>!()[].,-")
_HINTS: Final = {
    '"': "strings use single quotes, like 'text'",
    "=": "compare with ==",
    "&": "write && for 'and'",
    "|": "write || for 'or'",
    "$": "${{ }} cannot be nested inside an expression",
    "{": "${{ }} cannot be nested inside an expression",
    "}": "${{ }} cannot be nested inside an expression",
}


@dataclass(frozen=True)
class Token:
    kind: str  # "string" | "number" | "ident" | "property" | "op" | "end"
    text: str
    column: int  # 1-based, for messages
    number: int | float = 0  # the value of a number token
    string: str = ""  # the value of a string token, quotes removed


def fail(source: str, column: int, reason: str) -> ExpressionError:
    # Columns count within the expression as shown, i.e. without its surrounding blanks.
    shown_column = max(1, column - (len(source) - len(source.lstrip())))
    return ExpressionError(f"{reason} (column {shown_column} of {shorten(source.strip())!r})")


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, so one odd value cannot flood a problem list."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while True:
        while position < len(source) and source[position].isspace():
            position += 1
        if position >= len(source):
            tokens.append(Token("end", "", len(source.rstrip()) + 1))
            return tokens
        after_dot = bool(tokens) and tokens[-1].kind == "op" and tokens[-1].text == "."
        token = _next_token(source, position, after_dot=after_dot)
        tokens.append(token)
        position = token.column - 1 + len(token.text)


def _next_token(source: str, position: int, *, after_dot: bool) -> Token:
    column = position + 1
    char = source[position]
    if after_dot:
        if char == "*":
            raise fail(source, column, "object filters (.*) are not supported")
        match = _PROPERTY.match(source, position)
        if match is None:
            raise fail(source, column, f"expected a property name after '.', found {char!r}")
        return Token("property", match.group(), column)
    if char == "'":
        return _string_token(source, position)
    number = _NUMBER.match(source, position)
    if number is not None:
        end = number.end()
        if end < len(source) and (source[end].isalnum() or source[end] == "_"):
            raise fail(source, column, f"malformed number {source[position : end + 1]!r}")
        return Token(
            "number", number.group(), column, number=_number_value(source, number.group(), column)
        )
    ident = _IDENT.match(source, position)
    if ident is not None:
        return Token("ident", ident.group(), column)
    for operator in _OPERATORS:
        if source.startswith(operator, position):
            return Token("op", operator, column)
    hint = _HINTS.get(char)
    reason = f"unexpected character {char!r}" + (f": {hint}" if hint else "")
    raise fail(source, column, reason)


def _string_token(source: str, position: int) -> Token:
    end = position + 1
    pieces: list[str] = []
    while end < len(source):
        if source[end] == "'":
            if source.startswith("''", end):  # a doubled quote is a literal quote
                pieces.append("'")
                end += 2
                continue
            return Token("string", source[position : end + 1], position + 1, string="".join(pieces))
        pieces.append(source[end])
        end += 1
    raise fail(source, position + 1, "unterminated string: close it with '")


def _number_value(source: str, token: str, column: int) -> int | float:
    try:
        if any(c in token for c in ".eE") and not token.startswith("0x"):
            return float(token)
        value = int(token, 16 if token.startswith("0x") else 10)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise fail(source, column, "number has too many digits") from None
    # Beyond this a number cannot even be printed back; GitHub's numbers are doubles anyway.
    if value.bit_length() > 1000:
        raise fail(source, column, "number has too many digits")
    return value
