"""Properties of the parsers at the engine's edge: they accept or refuse, they never crash.

``REQUESTS.validate_json`` (commands) and ``TIMERS.validate_json`` (fired timers) raise nothing but
pydantic's ``ValidationError``; ``codec.decode`` (events) raises nothing but ``UndecodableEvent``,
naming the subject and stream sequence, with a reason short enough to log and dead-letter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from actors.engine.timers import TIMERS
from events.base import Event
from events.codec import decode
from events.errors import UndecodableEvent
from events.requests import REQUESTS, CancelRequest, StartRequest
from tests.bad_input import (
    bad_payloads,
    cancel_template,
    job_event_template,
    json_values,
    start_template,
    timer_template,
    workflow_event_template,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A refusal is logged and dead-lettered: its reason must stay readable whatever the input.
MAX_REASON = 2_000

anything = st.binary(max_size=500) | json_values.map(orjson.dumps)
commands = (
    anything
    | bad_payloads(start_template("wf-1"))
    | bad_payloads(cancel_template("wf-1"))
    | st.sampled_from([orjson.dumps(start_template("wf-1")), orjson.dumps(cancel_template("w"))])
)
events = (
    anything
    | bad_payloads(job_event_template("wf-1"))
    | bad_payloads(workflow_event_template("wf-1"))
    | st.sampled_from([orjson.dumps(job_event_template("wf-1"))])
)
timers = anything | bad_payloads(timer_template("wf-1"))

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def outcome(parse: Callable[[], T], refused: type[E]) -> tuple[T | None, E | None]:
    """What ``parse`` returned, or the ``refused`` exception it raised; anything else propagates."""
    try:
        return parse(), None
    except refused as exc:
        return None, exc


@FAST
@given(commands)
@example(b"")
@example(b"\xff\xfe")
@example(b'{"type": "start", "workflow_id": "a.b", "definition": {}}')
@example(b'{"type": {"start": 1}, "workflow_id": "x"}')
@example(b'{"type": "cancel", "workflow_id": "x", "v": 123456789012345678901234567890}')
def test_a_command_is_parsed_or_refused_with_a_validation_error(data: bytes) -> None:
    request, refusal = outcome(lambda: REQUESTS.validate_json(data), ValidationError)
    if refusal is not None:
        assert refusal.errors()
        return
    assert isinstance(request, StartRequest | CancelRequest)
    # An accepted request is one a subject can be built from (no injected dots or wildcards).
    assert request.subject().split(".")[-1] == request.workflow_id


@FAST
@given(events, st.integers(0, 2**63), st.sampled_from(["evt.w.wf.X", "evt.w.job.a.Y", "?"]))
@example(b"", 1, "evt.w.wf.X")
@example(b'{"type": "' + b"T" * 900_000 + b'"}', 7, "evt.w.wf.X")
@example(b'{"type": ["JobSucceeded"]}', 8, "evt.w.job.a.JobSucceeded")
@example(b'{"type": "JobSucceeded", "epoch": 123456789012345678901234567890}', 9, "?")
def test_an_event_is_decoded_or_refused_naming_subject_and_sequence(
    data: bytes, seq: int, subject: str
) -> None:
    event, refusal = outcome(lambda: decode(data, subject=subject, seq=seq), UndecodableEvent)
    if refusal is not None:
        assert (refusal.subject, refusal.seq) == (subject, seq)
        assert f"cannot decode event at {subject} (stream sequence {seq}): " in str(refusal)
        assert refusal.reason
        assert len(str(refusal)) <= MAX_REASON
        return
    assert isinstance(event, Event)


@FAST
@given(timers)
def test_a_timer_is_parsed_or_refused_with_a_validation_error(data: bytes) -> None:
    _, refusal = outcome(lambda: TIMERS.validate_json(data), ValidationError)
    assert refusal is None or refusal.errors()


@pytest.mark.parametrize(
    "template", [start_template("wf-1"), cancel_template("wf-1")], ids=["start", "cancel"]
)
def test_the_templates_themselves_are_valid(template: dict[str, Any]) -> None:
    # The strategies break valid messages: they must start from valid ones.
    assert REQUESTS.validate_json(orjson.dumps(template)).workflow_id == "wf-1"


def test_the_event_and_timer_templates_are_valid() -> None:
    for template in (job_event_template("wf-1"), workflow_event_template("wf-1")):
        assert decode(orjson.dumps(template)).event_type == template["type"]
    assert TIMERS.validate_json(orjson.dumps(timer_template("wf-1"))).workflow_id == "wf-1"
