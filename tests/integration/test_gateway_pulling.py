"""The gateway's pull feeds keep dispatches at hand while claims come often, release what no
claim took, and a lease kept by the ack deadline of a dispatch that waited at hand is renewed at
its claim. A real nats-server, the label set consumer the gateway uses."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError

from events import subjects
from events.dispatch import LabelSet
from gateway.keeping import RENEW_KEPT, LeaseKeeping
from gateway.lease_ids import LeaseId
from gateway.pulling import PREFETCH, OneShotPuller
from sdk.worker.consumers import ensure_consumer
from tests.eventually import assert_eventually

LABELS = LabelSet.of(["at-hand"])


async def queue(nc: NATS, count: int) -> None:
    js = nc.jetstream()
    for i in range(count):
        await js.publish(f"evt.0.wf{i}.job.j.JobQueued.{LABELS.token}", b"{}")


async def unacked(nc: NATS) -> int:
    info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, LABELS.consumer)
    return int(info.num_ack_pending)


async def test_claims_that_come_often_take_dispatches_at_hand_and_what_none_took_is_released(
    clean_nats: NATS,
) -> None:
    await queue(clean_nats, 6)
    # Every claim counts as "often" here; what is at hand goes back after half a second.
    puller = OneShotPuller(clean_nats, consumer_lease=30, often=60, hold=0.5)
    try:
        first = await puller.pull_one([LABELS], wait=0)
        second = await puller.pull_one([LABELS], wait=0)  # often now: it asks for more at hand
        assert first is not None and second is not None
        assert (first.kept, second.kept) == (0, 0)

        async def at_hand() -> bool:
            return await unacked(clean_nats) == 2 + PREFETCH

        await assert_eventually(at_hand)
        third = await puller.pull_one([LABELS], wait=0)
        assert third is not None and third.kept > 0, "the third claim did not take one at hand"
        # No claim comes any more: what is at hand is released for anyone else.
        other = await clean_nats.jetstream().pull_subscribe_bind(
            LABELS.consumer, subjects.EVENTS_STREAM
        )
        taken: list[object] = []

        async def released() -> bool:
            with contextlib.suppress(NatsTimeoutError):
                taken.extend(await other.fetch(3 - len(taken), timeout=0.5))
            return len(taken) == 3  # 6 queued, 3 claimed

        await assert_eventually(released, timeout=10)
    finally:
        await puller.stop()


async def test_a_deadline_lease_on_a_dispatch_that_waited_at_hand_runs_from_its_claim(
    clean_nats: NATS,
) -> None:
    await ensure_consumer(clean_nats, LABELS, lease_ttl=2)
    await queue(clean_nats, 1)
    sub = await clean_nats.jetstream().pull_subscribe_bind(LABELS.consumer, subjects.EVENTS_STREAM)
    (msg,) = await sub.fetch(1, timeout=5)
    waited = 1.5
    await asyncio.sleep(waited)  # as if it had waited at hand that long (not a synchronisation)
    assert waited > RENEW_KEPT
    lease = LeaseId(
        workflow_id="wf0", job="j", attempt=1, epoch=1, worker_id="w", labelset=LABELS.token,
        ttl=2, granted_at_ms=0, dispatch_seq=msg.metadata.sequence.stream, ack=msg.reply,
    )  # fmt: skip
    await LeaseKeeping(clean_nats).hold(msg, lease, datetime.now(UTC), kept=waited)
    # Without the renewal its deadline lapses 2 s after the delivery, half a second from now;
    # with it, 2 s from the claim.
    try:
        again = await sub.fetch(1, timeout=1.2)
    except NatsTimeoutError:
        again = []
    assert again == [], "the dispatch was delivered again before its lease from the claim ended"
    (late,) = await sub.fetch(1, timeout=5)  # and it does lapse, a whole lease after the claim
    assert late.metadata.num_delivered == 2
