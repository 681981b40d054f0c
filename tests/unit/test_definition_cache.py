"""The engine's cache of validated definitions (``actors.engine.definition_cache``)."""

from __future__ import annotations

import pytest

from actors.engine.definition_cache import DefinitionCache
from events.errors import InvalidWorkflow

GOOD = {"name": "one", "jobs": {"a": {"run": "true"}, "b": {"run": "true", "needs": ["a"]}}}
BAD = {"name": "bad", "jobs": {"a": {"run": "true", "needs": ["ghost"]}}}


def test_the_same_mapping_is_validated_once_whatever_its_key_order() -> None:
    cache = DefinitionCache()
    first = cache.parse(GOOD, source="workflow w1")
    reordered = {"jobs": dict(reversed(list(GOOD["jobs"].items()))), "name": "one"}  # type: ignore[call-overload]
    assert cache.parse(reordered, source="workflow w2") is first
    assert cache.parse({**GOOD, "name": "two"}, source="workflow w3") is not first


def test_an_invalid_mapping_is_refused_every_time_naming_its_own_source() -> None:
    cache = DefinitionCache()
    for wf in ("w1", "w2"):
        with pytest.raises(InvalidWorkflow) as refused:
            cache.parse(BAD, source=f"workflow {wf}")
        assert f"workflow {wf}" in str(refused.value)
        assert "unknown job 'ghost'" in str(refused.value)


def test_the_oldest_definition_is_forgotten_beyond_the_size() -> None:
    cache = DefinitionCache(size=2)
    first = cache.parse(GOOD, source="w")
    cache.parse({**GOOD, "name": "two"}, source="w")
    cache.parse({**GOOD, "name": "three"}, source="w")
    assert cache.parse(GOOD, source="w") is not first  # validated again
