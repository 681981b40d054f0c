"""Validated workflow definitions, remembered by content: a start validates each distinct one once.

Validation is a pure function of the raw mapping, and most starts repeat a few workflow files
(``parse_workflow`` was ~10% of the engine's CPU on no-op jobs). The key is the mapping's
canonical JSON; only definitions that validated are kept, so every invalid one is refused with
its full list of problems, each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from actors.definitions import parse_workflow
from events.definition import WorkflowDefinition


class DefinitionCache:
    def __init__(self, *, size: int = 256) -> None:
        self._size = size
        self._known: OrderedDict[bytes, WorkflowDefinition] = OrderedDict()

    def parse(self, raw: Mapping[str, Any], *, source: str) -> WorkflowDefinition:
        """``parse_workflow(raw)``, from memory when this very mapping validated before."""
        try:
            key = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # not plain JSON data (cannot come off the wire): just validate it
            return parse_workflow(raw, source=source)
        known = self._known.get(key)
        if known is not None:
            self._known.move_to_end(key)
            return known
        definition = parse_workflow(raw, source=source)
        self._known[key] = definition
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return definition
