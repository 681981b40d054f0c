"""Copy-with-changes for the actors' frozen state dataclasses, cheap enough for the fold.

``dataclasses.replace`` re-runs ``__init__`` over every field (~10 µs for a job's state); the
fold does this for every event of a workflow's history, so it copies the instance dict instead.
Unknown field names still fail loudly, as with ``replace``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


_FIELDS: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


def updated(state: T, **changes: Any) -> T:
    """A copy of the frozen dataclass ``state`` with ``changes`` applied (no validation)."""
    return updated_by(state, changes)


def updated_by(state: T, changes: dict[str, Any]) -> T:
    """``updated`` with the changes in a dict (for a caller that builds them as one)."""
    cls = state.__class__
    # A copy of the dict (one memcpy for a dict of the same keys) given to a bare instance:
    # 30% cheaper than filling the new instance's own empty dict.
    fields = state.__dict__.copy()
    fields.update(changes)
    # An instance's dict holds exactly its fields: a name that is not one made it longer
    # (cheaper than checking the names first, which cost a tenth of a fold).
    if len(fields) != len(_field_names(cls)):
        unknown = sorted(changes.keys() - _field_names(cls))
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    new = object.__new__(cls)
    object.__setattr__(new, "__dict__", fields)  # frozen dataclasses refuse plain assignment
    return new


def stamped(before: T, after: T, last_seq: int) -> T:
    """``after`` (what an ``evolve`` made of ``before``) with its ``last_seq`` set.

    A fold stamps every recorded event's sequence on the actor's state: ``updated`` would copy
    the state a second time per event (~1.3 µs for a job's, a third of the fold). An ``evolve``
    returns either ``before`` itself (nothing changed) or a copy it made and nobody else holds
    yet, which may take the sequence in place."""
    if after is before:
        return updated(before, last_seq=last_seq)
    after.__dict__["last_seq"] = last_seq
    return after
