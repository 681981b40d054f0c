"""Dispatch on a real nats-server: the label set registry; the JobQueued event is the dispatch."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from actors.engine.labelsets import LabelSets
from events import subjects
from events.catalog import JobQueued, JobSpec
from events.dispatch import LabelSet
from events.store import ActorRef, EventStore
from sdk.worker.pull import ensure_consumer


def queued(
    wf: str, job: str, *, labels: tuple[str, ...] = (), uses: str | None = None
) -> JobQueued:
    spec = JobSpec(run=None if uses else "true", uses=uses, labels=labels)
    return JobQueued(workflow_id=wf, job=job, attempt=1, spec=spec, queued_at=datetime.now(UTC))


async def append(nc: NATS, event: JobQueued) -> int:
    actor = ActorRef.job(event.workflow_id, event.job)
    return await EventStore(nc).append(actor, [event], expected_seq=0, command_id=event.subject())


async def test_label_sets_are_registered_once_under_their_consumer_name(clean_nats: NATS) -> None:
    first, second = LabelSets(clean_nats), LabelSets(clean_nats)  # two engines
    await first.register(["docker+linux"])
    await second.register(["docker+linux"])
    await first.register(["@resize", "docker+linux"])
    kv = await clean_nats.jetstream().key_value(subjects.KV_LABELSETS)
    expected = LabelSet.of({"docker", "linux"})
    entry = await kv.get(expected.consumer)
    assert LabelSet.decode(entry.value or b"") == expected
    assert entry.revision == 1  # create-if-absent: the second engine did not overwrite it
    handler_set = await kv.get(LabelSet.of({"@resize"}).consumer)
    assert LabelSet.decode(handler_set.value or b"").token == "@resize"


async def test_a_label_set_consumer_delivers_exactly_its_queued_jobs(clean_nats: NATS) -> None:
    linux = LabelSet.of({"linux"})
    # Appended before the consumer exists (no worker yet): it delivers from the start.
    early = [queued(f"wf-{n}", "build", labels=("linux",)) for n in range(20)]
    seqs = [await append(clean_nats, event) for event in early]
    await append(clean_nats, queued("wf-0", "other"))  # another label set (~)
    await append(clean_nats, queued("wf-1", "gpu", labels=("gpu", "linux")))  # a superset
    lease = await ensure_consumer(clean_nats, linux, lease_ttl=7.0)
    assert lease == 7.0
    late = queued("wf-late", "build", labels=("linux",))
    seqs.append(await append(clean_nats, late))
    js = clean_nats.jetstream()
    sub = await js.pull_subscribe_bind(linux.consumer, subjects.EVENTS_STREAM)
    delivered = await sub.fetch(100, timeout=2)
    assert sorted(msg.metadata.sequence.stream for msg in delivered) == sorted(seqs)
    assert {msg.subject.rsplit(".", 1)[-1] for msg in delivered} == {"linux"}
    info = await js.consumer_info(subjects.EVENTS_STREAM, linux.consumer)
    assert info.config.ack_wait == 7.0
    # A second worker asking for another lease gets the one that applies.
    assert await ensure_consumer(clean_nats, linux, lease_ttl=30.0) == 7.0
