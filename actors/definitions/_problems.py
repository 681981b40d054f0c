"""Collecting located problems so that validation can report all of them at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, NoReturn

from events.errors import InvalidWorkflow

# A location inside the raw definition: mapping keys and list indexes, outermost first.
Path = tuple[object, ...]

_PLAIN_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+\Z")


def format_path(path: Path) -> str:
    """``("jobs", "test", "needs", 0)`` -> ``jobs.test.needs[0]``; the root is ``workflow``."""
    if not path:
        return "workflow"
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{_short_repr(part)}]"
    return text


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


class ProblemLog:
    """Problems found so far, each prefixed by its location (and file line when known)."""

    def __init__(
        self, *, source: str | None = None, lines: Mapping[Path, int] | None = None
    ) -> None:
        self.source = source
        # Kept by reference: the YAML reader fills it while problems are already being logged.
        self._lines: Mapping[Path, int] = lines if lines is not None else {}
        self._found: list[tuple[int, str]] = []

    def add(self, path: Path, message: str, *, line: int | None = None) -> None:
        """Log ``message`` about ``path``; ``line`` overrides the line looked up for it."""
        line = line if line is not None else self._line_of(path)
        location = format_path(path)
        if line is not None:
            location = f"{self.source or '<string>'}:{line} {location}"
        self._found.append((line or 0, f"{location}: {message}"))

    def __bool__(self) -> bool:
        return bool(self._found)

    @property
    def problems(self) -> list[str]:
        # Sorted by line so that a file's problems read top to bottom; stable for equal lines.
        return [text for _, text in sorted(self._found, key=lambda found: found[0])]

    def raise_if_any(self) -> None:
        if self._found:
            self.fail()

    def fail(self) -> NoReturn:
        raise InvalidWorkflow(self.problems, source=self.source)

    def _line_of(self, path: Path) -> int | None:
        if not self._lines:
            return None
        # A missing field has no line of its own: point at the nearest enclosing one.
        for end in range(len(path), -1, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None
