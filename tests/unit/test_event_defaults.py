"""An event field's default is part of the log's format, so it may never change.

``events.codec.encode`` leaves out every field at its default (``v`` and ``type`` excepted):
an event written today without ``retry`` means "the default retry policy as it was when it was
written". If a default changed, every such event already in a log would read back as the new
one, and a replay would decide differently from the run it replays. The defaults of every model
an event can hold are pinned in ``event_defaults.json``; print the current ones with
``python -m tests.unit.test_event_defaults``.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

from events import codec
from events.catalog import JOB_EVENTS, WORKFLOW_EVENTS
from tests.unit.golden import GOLDEN, load_golden

PINNED = Path(__file__).with_name("event_defaults.json")
EVENTS = (*WORKFLOW_EVENTS, *JOB_EVENTS)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def current_defaults() -> dict[str, Any]:
    """``Model.field`` -> its default as JSON, for every model reachable from an event."""
    found: dict[str, Any] = {}
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = list(EVENTS)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if field.default is not PydanticUndefined:
                found[f"{model.__name__}.{name}"] = to_jsonable_python(field.default)
            elif field.default_factory is not None:
                found[f"{model.__name__}.{name}"] = to_jsonable_python(field.default_factory())  # type: ignore[call-arg]
            todo.extend(_models_in(field.annotation))
    return dict(sorted(found.items()))


def test_no_default_of_an_event_field_has_changed() -> None:
    pinned: dict[str, Any] = orjson.loads(PINNED.read_bytes())
    current = current_defaults()
    changed = {
        key: (was, current.get(key, "<field gone>"))
        for key, was in pinned.items()
        if current.get(key, "<field gone>") != was
    }
    assert not changed, (
        "event field defaults changed (pinned -> now); events already written without these "
        "fields would read back differently. Keep the old default on the event model and apply "
        f"the new one where definitions are parsed, or version the event: {changed}"
    )
    unpinned = {key: value for key, value in current.items() if key not in pinned}
    assert not unpinned, f"pin the defaults of new event fields in {PINNED.name}: {unpinned}"


@pytest.mark.parametrize("event", EVENTS, ids=lambda cls: cls.__name__)
def test_every_event_names_its_type_after_its_class(event: type[BaseModel]) -> None:
    # encode writes the class's name as the tag; decoding goes by the field's literal.
    assert event.model_fields["type"].default == event.__name__


def test_encode_writes_the_version_and_the_type_first_and_leaves_defaults_out() -> None:
    recorded, _ = load_golden(sorted(path.stem for path in GOLDEN.glob("*.json"))[0])
    defaults = current_defaults()
    for item in recorded:
        data = codec.encode(item.event)
        document = orjson.loads(data)
        assert list(document)[:2] == ["v", "type"], data[:80]
        assert document["type"] == item.event.event_type
        left_in = [
            key
            for key, value in document.items()
            if key not in ("v", "type")
            and defaults.get(f"{item.event.event_type}.{key}", object()) == value
        ]
        assert left_in == [], (item.subject, left_in)


if __name__ == "__main__":
    sys.stdout.buffer.write(orjson.dumps(current_defaults(), option=orjson.OPT_INDENT_2) + b"\n")
