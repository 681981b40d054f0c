"""Bad input on every subject jetwork consumes is dead-lettered and never stops anything.

Property-based: for each example, hypothesis breaks a valid message of each kind the engine and
the projector read (start and cancel commands, a workflow event, a job result the engine reacts
to, a fired timer), the five are published, and each must come back as one dead letter naming
its subject, stream sequence and a short reason (an event that is not one is met by both the
engine and the projector, and recorded once); then a valid workflow must still run to its end.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from actors.engine import Engine
from events import subjects
from events.dead_letters import DeadLetter, list_dead_letters
from events.store import EventStore
from projections.projector import Projector
from tests.bad_input import (
    bad_payloads,
    cancel_template,
    job_event_template,
    start_template,
    timer_template,
    workflow_event_template,
)
from tests.engine_harness import (
    InTestRunner,
    RecordingDispatcher,
    ended,
    running_engine,
    start_workflow,
    succeed,
)
from tests.eventually import assert_eventually


@dataclass(frozen=True)
class Kind:
    name: str
    subject: Callable[[str], str]
    template: Callable[[str], dict[str, Any]]
    source: str
    reason: Callable[[str, int], str]  # what the dead letter's reason starts with


KINDS = [
    Kind(
        "start",
        lambda wf: subjects.command("start", wf),
        start_template,
        "commands",
        lambda s, n: "malformed",
    ),
    Kind(
        "cancel",
        lambda wf: subjects.command("cancel", wf),
        cancel_template,
        "commands",
        lambda s, n: "malformed",
    ),
    Kind(
        "workflow event",
        lambda wf: subjects.workflow_event(wf, "WorkflowCancelRequested"),
        workflow_event_template,
        "events",
        lambda s, n: f"cannot decode event at {s} (stream sequence {n}): ",
    ),
    Kind(
        "job event",
        lambda wf: subjects.job_event(wf, "a", "JobSucceeded"),
        job_event_template,
        "events",
        lambda s, n: f"cannot decode event at {s} (stream sequence {n}): ",
    ),
    Kind(
        "timer",
        lambda wf: subjects.timer_fire(subjects.partition_of(wf), f"{wf}.wf-timeout"),
        timer_template,
        "commands",
        lambda s, n: "malformed timer",
    ),
]
MAX_REASON = 2_100  # events.dead_letters bounds reasons to 2,000 characters and says how many more
ONE_JOB = {"name": "canary", "jobs": {"only": {"run": "true"}}}


@dataclass
class Rig:
    nc: NATS
    store: EventStore
    engine: Engine
    letters: dict[str, list[DeadLetter]] = field(default_factory=lambda: defaultdict(list))
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def on_letter(self, msg: Msg) -> None:
        letter = DeadLetter.model_validate_json(msg.data)
        self.letters[letter.subject].append(letter)

    async def still_works(self, wf: str) -> None:
        await start_workflow(self.nc, wf, ONE_JOB)

        async def succeeded() -> bool:
            return ended(await self.store.history(wf)) == "WorkflowSucceeded"

        await assert_eventually(succeeded, timeout=30, message=f"{wf} did not run after bad input")


@pytest.fixture
async def rig(clean_nats: NATS) -> AsyncIterator[Rig]:
    dispatcher = RecordingDispatcher()
    store = EventStore(clean_nats)
    engine = await running_engine(clean_nats, dispatcher)
    projector = Projector(clean_nats)
    await projector.start()
    runner = InTestRunner(store, dispatcher, succeed).start()
    rig = Rig(clean_nats, store, engine)
    # What the stream stored (an ordered consumer), not what was published: a letter reported
    # by two processes is published twice and stored once.
    sub = await clean_nats.jetstream().subscribe(
        "dlq.>", cb=rig.on_letter, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    try:
        yield rig
    finally:
        await sub.unsubscribe()
        await runner.stop()
        await projector.stop()
        await engine.stop()


# One engine for all examples (hypothesis reuses the function-scoped fixture on purpose).
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_bad_input_on_every_consumed_subject_is_dead_lettered(
    rig: Rig, data: st.DataObject
) -> None:
    # Fixed-width ids: the strategies derive from templates holding the id, and hypothesis needs
    # them to draw the same way when it replays an example.
    n = next(rig.ids)
    wf = f"wf-bad-{n:06d}"
    js = rig.nc.jetstream()
    published: list[tuple[Kind, str, bytes, int]] = []
    for kind in KINDS:
        payload = data.draw(bad_payloads(kind.template(wf)), label=kind.name)
        subject = kind.subject(wf)
        ack = await js.publish(subject, payload)
        published.append((kind, subject, payload, ack.seq))

    def all_dead_lettered() -> bool:
        return all(rig.letters.get(subject) for _, subject, _, _ in published)

    await assert_eventually(all_dead_lettered, timeout=60, message="missing dead letters")
    for kind, subject, payload, seq in published:
        (letter,) = rig.letters[subject]
        assert letter.source == kind.source
        assert letter.seq == seq
        assert letter.payload_size == len(payload)
        assert letter.reason.startswith(kind.reason(subject, seq)), letter.reason
        assert len(letter.reason) <= MAX_REASON
    # Bad input caused nothing: the workflow's log holds the two garbage events and no more.
    in_log = [m.subject for m in await rig.store.read_raw(subjects.workflow_events(wf))]
    assert in_log == [subject for _, subject, _, _ in published if subject.startswith("evt.")]
    await rig.still_works(f"wf-canary-{n}")


async def test_a_poisoned_batch_does_not_hold_back_the_good_messages_in_it(rig: Rig) -> None:
    # An event whose type tag is a list used to escape the codec as a TypeError and fail the
    # whole batch it came in, good messages included, again at every redelivery.
    js = rig.nc.jetstream()
    wf = "wf-poison"
    huge_subject = subjects.job_event(wf, "b", "JobSucceeded")
    poison = [
        (subjects.job_event(wf, "a", "JobSucceeded"), b'{"type": ["JobSucceeded"]}'),
        (subjects.workflow_event(wf, "WorkflowCancelRequested"), b'{"type": {"a": 1}}'),
        (subjects.command("start", wf), b'{"type": ["start"], "workflow_id": "wf-poison"}'),
        (subjects.timer_fire(subjects.partition_of(wf), "x"), b'{"kind": ["retry"]}'),
        (huge_subject, b'{"type": "' + b"T" * 900_000 + b'"}'),
    ]
    await asyncio.gather(*(js.publish(subject, payload) for subject, payload in poison))
    await asyncio.gather(*(rig.still_works(f"wf-good-{n}") for n in range(3)))
    await assert_eventually(lambda: all(rig.letters.get(subject) for subject, _ in poison))
    listed = {letter.subject: letter for letter in await list_dead_letters(rig.nc)}
    assert set(listed) == {subject for subject, _ in poison}
    huge = listed[huge_subject]
    assert huge.reason.startswith(f"cannot decode event at {huge_subject}")
    assert "unknown event type 'TTTT" in huge.reason
    assert len(huge.reason) < 1_200
    assert huge.payload_size == 900_000 + len(b'{"type": ""}')
