"""Dispatch on a real nats-server: label set registry, one message per attempt, schedules."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS

from events import subjects
from events.dispatch import Dispatcher, DispatchMessage, LabelSet
from events.schedules import NearTimers
from tests.eventually import assert_eventually


async def subject_counts(nc: NATS) -> dict[str, int]:
    info = await nc.jetstream().stream_info(subjects.JOBS_STREAM, subjects_filter=">")
    return dict(info.state.subjects or {})


async def dispatch(dispatcher: Dispatcher, job: str, **kw: object) -> None:
    args: dict[str, object] = {
        "workflow_id": "wf1",
        "job": job,
        "attempt": 1,
        "labels": ["linux"],
        "uses": None,
        "not_before": None,
        "now": datetime.now(UTC),
    }
    args.update(kw)
    await dispatcher.dispatch(**args)  # type: ignore[arg-type]


async def test_label_sets_are_registered_once_under_their_consumer_name(clean_nats: NATS) -> None:
    first, second = Dispatcher(clean_nats), Dispatcher(clean_nats)  # two engines
    await dispatch(first, "a", labels=["linux", "docker"])
    await dispatch(second, "b", labels=["docker", "linux"])
    await dispatch(first, "c", labels=[], uses="resize")
    kv = await clean_nats.jetstream().key_value(subjects.KV_LABELSETS)
    expected = LabelSet.of({"docker", "linux"})
    entry = await kv.get(expected.consumer)
    assert LabelSet.decode(entry.value or b"") == expected
    assert entry.revision == 1  # create-if-absent: the second engine did not overwrite it
    handler_set = await kv.get(LabelSet.of({"@resize"}).consumer)
    assert LabelSet.decode(handler_set.value or b"").token == "@resize"


async def test_one_message_per_attempt_on_the_label_set_subject(clean_nats: NATS) -> None:
    dispatcher = Dispatcher(clean_nats)
    await dispatch(dispatcher, "build")
    await dispatch(dispatcher, "build")  # a retried dispatch: de-duplicated
    await dispatch(dispatcher, "build", attempt=2)
    await dispatch(dispatcher, "test", labels=[])
    assert await subject_counts(clean_nats) == {"job.linux": 2, "job.~": 1}
    msg = await clean_nats.jetstream().get_msg(subjects.JOBS_STREAM, 1)
    assert DispatchMessage.decode(msg.data or b"") == DispatchMessage(
        workflow_id="wf1", job="build", attempt=1
    )
    assert (msg.headers or {}).get("Nats-Msg-Id") == "wf1.build.1"


async def test_a_delayed_dispatch_appears_only_when_due(clean_nats: NATS) -> None:
    dispatcher = Dispatcher(clean_nats)
    not_before = datetime.now(UTC) + timedelta(seconds=1.5)
    await dispatch(dispatcher, "later", not_before=not_before)
    assert await subject_counts(clean_nats) == {"jobsched.wf1.later.1": 1}

    async def fired() -> bool:
        return (await subject_counts(clean_nats)).get("job.linux") == 1

    await assert_eventually(fired, timeout=5, interval=0.02)
    fired_at = datetime.now(UTC)
    assert fired_at >= not_before
    # Schedules fire up to 250 ms late (the server's scheduler tick); bound the delay loosely.
    assert fired_at - not_before < timedelta(seconds=2.5)
    assert await subject_counts(clean_nats) == {"job.linux": 1}


async def test_a_past_not_before_dispatches_at_once(clean_nats: NATS) -> None:
    dispatcher = Dispatcher(clean_nats)
    started = time.monotonic()
    await dispatch(dispatcher, "overdue", not_before=datetime.now(UTC) - timedelta(seconds=30))
    assert await subject_counts(clean_nats) == {"job.linux": 1}
    assert time.monotonic() - started < 1.0


async def stored_at(nc: NATS, subject: str) -> datetime:
    """When the (only) message on ``subject`` was stored, by the server's clock."""
    msg = await nc.jetstream().get_last_msg(subjects.JOBS_STREAM, subject)
    assert msg.time is not None
    return datetime.fromisoformat(str(msg.time)) if isinstance(msg.time, str) else msg.time


def due_at_a_tenth_past(seconds: float) -> datetime:
    """A time ``seconds`` or a little more from now whose fraction of a second is .100: a
    schedule rounded to whole seconds would fire 0.9 s late."""
    due = datetime.now(UTC) + timedelta(seconds=seconds)
    return due.replace(microsecond=100_000) + timedelta(seconds=1)


async def test_a_schedule_fires_within_a_quarter_second_of_its_due_time(clean_nats: NATS) -> None:
    dispatcher = Dispatcher(clean_nats)  # no in-process timers: the schedule alone
    not_before = due_at_a_tenth_past(0.2)
    await dispatch(dispatcher, "soon", not_before=not_before)

    async def fired() -> bool:
        return (await subject_counts(clean_nats)).get("job.linux") == 1

    await assert_eventually(fired, timeout=5, interval=0.02)
    late = (await stored_at(clean_nats, "job.linux") - not_before).total_seconds()
    # nats-server fires schedules from a timer that runs at most every 250 ms; whole seconds
    # (what was sent before) made this 0.9 s.
    assert 0 <= late < 0.5, late


async def test_a_near_delayed_dispatch_is_published_on_time_and_once(clean_nats: NATS) -> None:
    near = NearTimers()
    dispatcher = Dispatcher(clean_nats, near=near)
    # Due in 30 ms: the server's scheduler, which runs at most every 250 ms, fires it ~220 ms
    # late; the in-process timer publishes it on time and deletes the schedule.
    not_before = datetime.now(UTC) + timedelta(milliseconds=30)
    await dispatch(dispatcher, "soon", not_before=not_before)
    assert near.pending == 1

    async def published_and_unscheduled() -> bool:
        counts = await subject_counts(clean_nats)
        return counts == {"job.linux": 1}  # the schedule was deleted: it cannot fire again

    await assert_eventually(published_and_unscheduled, timeout=5, interval=0.02)
    late = (await stored_at(clean_nats, "job.linux") - not_before).total_seconds()
    assert 0 <= late < 0.15, late
    msg = await clean_nats.jetstream().get_last_msg(subjects.JOBS_STREAM, "job.linux")
    assert DispatchMessage.decode(msg.data or b"").job == "soon"
