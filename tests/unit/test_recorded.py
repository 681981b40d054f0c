"""``events.base.recorded`` makes the very ``RecordedEvent`` its constructor makes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from events.base import RecordedEvent, recorded
from events.catalog import JobRetryScheduled


def test_recorded_is_the_constructors_frozen_object_field_for_field() -> None:
    # A field added to RecordedEvent must be filled by ``recorded`` too: this list fails first.
    assert [f.name for f in dataclasses.fields(RecordedEvent)] == [
        "seq",
        "subject",
        "time",
        "event",
        "msg_id",
    ]
    now = datetime.now(UTC)
    event = JobRetryScheduled(workflow_id="wf", job="a", attempt=2, delay=1.0, not_before=now)
    for msg_id in ("c1:0", None):
        made = recorded(7, "evt.1.wf.job.a.JobRetryScheduled", now, event, msg_id)
        expected = RecordedEvent(7, "evt.1.wf.job.a.JobRetryScheduled", now, event, msg_id)
        assert made == expected
        assert hash(made) == hash(expected)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.seq = 8  # type: ignore[misc]
