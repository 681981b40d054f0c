"""The event codec: what is written leaves out absent values, and what was written before (with
``null`` for every absent value) still reads back the same."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from events import codec
from tests.unit.golden import GOLDEN, load_golden

NAMES = sorted(path.stem for path in GOLDEN.glob("*.json"))


def _nulls(value: Any, where: str = "") -> list[str]:
    """Where a JSON document holds ``null`` as the value of an object's key."""
    if isinstance(value, dict):
        found = [f"{where}.{key}" for key, item in value.items() if item is None]
        return found + [p for key, item in value.items() for p in _nulls(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _nulls(item, f"{where}[{index}]")]
    return []


@pytest.mark.parametrize("name", NAMES)
def test_events_are_written_without_their_absent_values_and_read_back_equal(name: str) -> None:
    recorded, _ = load_golden(name)  # recorded with a null for every absent value
    for item in recorded:
        data = codec.encode(item.event)
        assert _nulls(orjson.loads(data)) == [], (item.subject, data[:200])
        assert codec.decode(data) == item.event


def test_a_null_inside_free_form_data_is_kept() -> None:
    recorded, _ = load_golden(NAMES[0])
    started = recorded[0].event
    changed = started.model_copy(update={"inputs": {"kept": None, "deep": {"also": None}}})
    assert orjson.loads(codec.encode(changed))["inputs"] == {"kept": None, "deep": {"also": None}}
    assert codec.decode(codec.encode(changed)) == changed


def test_default_looking_values_inside_free_form_data_are_kept() -> None:
    recorded, _ = load_golden(NAMES[0])
    started = recorded[0].event
    inputs = {"zero": 0, "empty": {}, "no": False, "list": [], "deep": {"retry": {}}}
    changed = started.model_copy(update={"inputs": inputs})
    assert orjson.loads(codec.encode(changed))["inputs"] == inputs
    assert codec.decode(codec.encode(changed)) == changed
