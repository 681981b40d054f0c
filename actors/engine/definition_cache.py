"""Validated workflow definitions, remembered by content: a start validates each distinct one once.

Validation is a pure function of the raw mapping, and most starts repeat a few workflow files
(``parse_workflow`` was ~10% of the engine's CPU on no-op jobs). The key is the mapping's
canonical JSON; only definitions that validated are kept, so every invalid one is refused with
its full list of problems, each time. A definition whose ``workflow:`` still names a registered
definition is refused too: the start resolves names (``actors.definitions.named``), the engine
never reads the registry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from actors.definitions import parse_workflow
from actors.definitions._subflows import unresolved
from events.definition import WorkflowDefinition
from events.errors import InvalidWorkflow


class DefinitionCache:
    def __init__(self, *, size: int = 256) -> None:
        self._size = size
        self._known: OrderedDict[bytes, WorkflowDefinition] = OrderedDict()

    def parse(self, raw: Mapping[str, Any], *, source: str) -> WorkflowDefinition:
        """``parse_workflow(raw)``, from memory when this very mapping validated before."""
        try:
            key = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # not plain JSON data (cannot come off the wire): just validate it
            return _resolved(parse_workflow(raw, source=source), source)
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
            return known
        definition = _resolved(parse_workflow(raw, source=source), source)
        self._known[key] = definition
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return definition


def _resolved(definition: WorkflowDefinition, source: str) -> WorkflowDefinition:
    problems = unresolved(definition)
    if problems:
        raise InvalidWorkflow(problems, source=source)
    return definition
