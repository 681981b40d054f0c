"""What a ``workflow:`` reference (and ``jetwork run``'s argument) names: a file or a registered
definition.

The rule, the same everywhere: a reference that ends in ``.yaml`` or ``.yml``, or holds a ``/``,
is a file's path; anything else is a registered definition's ``NAME`` or ``NAME@VERSION``
(``events.definition_store``). Pure: the definition parser and the clients both apply it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_file_reference", "parse_reference"]

_REFERENCE: Final = re.compile(r"^([A-Za-z0-9_-]{1,128})(?:@([1-9][0-9]{0,8}))?\Z")
FILE_SUFFIXES: Final = (".yaml", ".yml")


def parse_reference(text: str) -> tuple[str, int | None] | None:
    """``name`` or ``name@version`` taken apart; None when ``text`` is neither."""
    found = _REFERENCE.match(text)
    if found is None:
        return None
    return found.group(1), int(found.group(2)) if found.group(2) else None


def is_file_reference(ref: str) -> bool:
    """Whether ``ref`` is a file's path (``./child.yaml``, ``lib/child``) rather than a name."""
    return ref.endswith(FILE_SUFFIXES) or "/" in ref
