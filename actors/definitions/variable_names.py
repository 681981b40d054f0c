"""What a workflow variable may be called: a name ``${{ vars.<name> }}`` can read."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["NAME_PATTERN", "name_problem"]

NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_NAME = re.compile(NAME_PATTERN)


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a variable's name, or None."""
    if not isinstance(name, str) or not _NAME.match(name):
        return (
            f"{name!r} is not a variable name (letters, digits and _, not starting with a digit, "
            "so that ${{ vars.NAME }} can read it)"
        )
    return None
