"""Hypothesis strategies for input the engine must refuse: one valid template per kind of message
the engine consumes, and ways to break it that are invalid by construction.

Every strategy here yields something no consumer may accept: arbitrary bytes and JSON of the wrong
shape, a strict prefix of a JSON object (never valid JSON), a field replaced by a value of another
JSON type that pydantic's lax mode does not convert (lists and objects for scalars; lists, numbers
and strings for objects), an unknown ``type``/``kind`` tag, and payloads of hundreds of kilobytes.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

from events.codec import EVENT_TYPES

NOW = "2026-01-01T00:00:00Z"
MAX_PAYLOAD = 1024 * 1024  # nats/server.conf


def start_template(wf: str) -> dict[str, Any]:
    definition = {"name": "ok", "jobs": {"a": {"run": "true"}}}
    return {"type": "start", "v": 1, "workflow_id": wf, "definition": definition, "inputs": {}}


def cancel_template(wf: str) -> dict[str, Any]:
    return {"type": "cancel", "v": 1, "workflow_id": wf, "reason": "r", "force": False}


def workflow_event_template(wf: str) -> dict[str, Any]:
    return {
        "type": "WorkflowCancelRequested",
        "v": 1,
        "workflow_id": wf,
        "reason": "r",
        "force": False,
        "requested_at": NOW,
    }


def job_event_template(wf: str) -> dict[str, Any]:
    return {
        "type": "JobSucceeded",
        "v": 1,
        "workflow_id": wf,
        "job": "a",
        "attempt": 1,
        "epoch": 1,
        "outputs": {},
        "ended_at": NOW,
    }


def timer_template(wf: str) -> dict[str, Any]:
    return {"kind": "workflow_timeout", "workflow_id": wf, "due": NOW}


KNOWN_TAGS = (
    frozenset({"start", "cancel", "workflow_timeout", "job_timeout", "retry"}) | EVENT_TYPES
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def wrong_type(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    payload = dict(template)
    key = draw(st.sampled_from(sorted(payload)))
    if isinstance(payload[key], dict):
        replacement = draw(st.lists(json_scalars, max_size=3) | json_scalars)
    else:
        replacement = draw(
            st.lists(json_scalars, max_size=3)
            | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
        )
    payload[key] = replacement
    return orjson.dumps(payload)


@st.composite
def truncated(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    data = orjson.dumps(template)
    return data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def unknown_tag(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    tag_key = "kind" if "kind" in template else "type"
    tag = draw(st.text(max_size=40).filter(lambda t: t not in KNOWN_TAGS))
    return orjson.dumps({**template, tag_key: tag})


@st.composite
def oversized(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    # Up to what the server accepts (anything larger never reaches a consumer).
    size = draw(st.integers(100_000, MAX_PAYLOAD - 4096))
    tag_key = "kind" if "kind" in template else "type"
    shape = draw(st.sampled_from(["filler", "huge tag", "huge field"]))
    if shape == "filler":
        return b"x" * size
    if shape == "huge tag":
        return orjson.dumps({**template, tag_key: "T" * size})
    # "v" is a number (or, in a timer, no field at all): a huge string is wrong either way.
    return orjson.dumps({**template, "v": "v" * size})


def bad_payloads(template: dict[str, Any], *, big: bool = True) -> st.SearchStrategy[bytes]:
    """Anything but a valid message of ``template``'s kind."""
    garbage = st.binary(max_size=300) | json_values.map(orjson.dumps)
    choices = garbage | truncated(template) | wrong_type(template) | unknown_tag(template)
    return choices | oversized(template) if big else choices
