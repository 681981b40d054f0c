"""How an HTTP worker's lease is kept between its calls: by the dispatch's ack deadline, or by a
durable timer. Whichever it is, the signed lease id says so, so any gateway keeps any lease.

**By the ack deadline** when the claim asks for the lease its label set consumer's ``ack_wait``
gives (the gateway creates its consumers with 30 s, the seed SDK's default lease and the NATS
worker's): as for a NATS worker, the dispatch is left unacked at the claim and its ack subject
goes into the lease id; a heartbeat renews it with ``+WPI`` (a request: the server's empty answer
proves the renewal arrived) and an accepted result ends it with ``+ACK``. If the worker vanishes,
JetStream delivers the dispatch again when the deadline lapses, and that delivery's claim takes
the attempt over (epoch + 1), as for a NATS worker. Nothing is written for the lease itself: a job
costs two NATS messages fewer than with a timer, and the claim one round trip less.

**By a durable timer** for any other length: the ack deadline is one per consumer, so a longer
lease would need someone renewing it while the worker is silent between its heartbeats, and a
shorter one someone releasing the message when it lapses. The dispatch is acked once the claim is
in the log and the timer armed; the expiry is a schedule of the workflow's partition
(``LeaseTimer``, due ``ttl`` from now). A heartbeat publishes it again with a later time (it
replaces the one before on its subject), a result purges it. If the worker stops heartbeating,
the timer fires at the engine owning the workflow, which queues the attempt again
(``ExpireLease``: a new ``JobQueued``) if that lease still holds it.

Only an accepted result acks: the server takes an ack for the message whatever delivery its
subject names (verified), so a stale holder's ``+ACK`` would end the lease of the delivery that
took the job over, and nothing would deliver the job again were that holder to vanish. A
heartbeat's ``+WPI`` sent just after a takeover (between its log check and the renewal) pushes the
new holder's deadline back once; its next heartbeat is answered 409.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from actors.engine.timers import LeaseTimer, schedule
from events import subjects
from events.errors import StoreError
from gateway.lease_ids import LeaseId
from sdk.worker.claims import now

DEADLINE_TOLERANCE: Final = 0.001
"""Seconds by which a lease may differ from the consumer's ack wait and still be kept by it."""
RENEW_TIMEOUT: Final = 5.0
"""Seconds a heartbeat waits for the server to confirm a ``+WPI``."""
RENEW_KEPT: Final = 0.05
"""A dispatch kept at hand longer than this (seconds) before its claim is renewed at the claim,
so that a lease kept by its ack deadline runs from the claim (``gateway.pulling``)."""


def kept_by_deadline(*, lease_ttl: float, ack_wait: float) -> bool:
    """Whether the consumer's ack deadline (``ack_wait``) is a lease of ``lease_ttl`` seconds."""
    return ack_wait > 0 and abs(lease_ttl - ack_wait) < DEADLINE_TOLERANCE


class LeaseKeeping:
    """Holds, renews and ends leases, by the ack deadline (``lease.ack`` set) or by a timer."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._js = nc.jetstream()

    async def hold(self, msg: Msg, lease: LeaseId, granted: datetime, *, kept: float) -> None:
        """Keep the lease of a claim just recorded from the dispatch ``msg``, which waited
        ``kept`` seconds at hand in the gateway before the claim took it."""
        if lease.ack:
            if kept > RENEW_KEPT:  # its deadline ran meanwhile: from now on, the whole lease
                await quietly(self._nc.publish(lease.ack, b"+WPI"))
            return  # the delivery's deadline runs: the message stays unacked
        try:
            await self._arm(lease, granted)
        except StoreError:
            # Without its expiry the lease could outlive a vanished worker: give the dispatch
            # back, its next delivery takes the attempt over with the next epoch.
            await quietly(msg.nak())
            raise
        await quietly(msg.ack())

    async def renew(self, lease: LeaseId) -> datetime:
        """Push the lease's end back by its ``ttl``; returns the new end."""
        start = now()
        if not lease.ack:
            return await self._arm(lease, start)
        try:
            await self._nc.request(lease.ack, b"+WPI", timeout=RENEW_TIMEOUT)
        except (NatsError, TimeoutError) as exc:
            raise StoreError(f"cannot renew the lease: {exc!r}", retryable=True) from None
        return start + timedelta(seconds=lease.ttl)

    async def end(self, lease: LeaseId, *, accepted: bool) -> None:
        """The lease's result was recorded (``accepted``) or refused: stop keeping it. Best
        effort, not waited for: a dispatch left unacked is delivered again and its claim finds
        the job moved on; a stale expiry that fires finds the lease ended."""
        if not lease.ack:
            await self._disarm(lease)
        elif accepted:
            await quietly(self._nc.publish(lease.ack, b"+ACK"))

    async def _arm(self, lease: LeaseId, start: datetime) -> datetime:
        """Publish (or push back) the lease's expiry; returns when it is due."""
        due = start + timedelta(seconds=lease.ttl)
        subject, body, headers = schedule(_timer(lease, due), msg_id=False)
        try:
            await self._js.publish(subject, body, headers=headers)
        except (NatsError, TimeoutError) as exc:
            raise StoreError(
                f"cannot schedule the lease's expiry: {exc!r}", retryable=True
            ) from None
        return due

    async def _disarm(self, lease: LeaseId) -> None:
        # The server purges without a reply subject too (verified): nothing to wait for.
        subject, _, _ = schedule(_timer(lease, now()), msg_id=False)
        api = f"$JS.API.STREAM.PURGE.{subjects.COMMANDS_STREAM}"
        await quietly(self._nc.publish(api, orjson.dumps({"filter": subject})))


def _timer(lease: LeaseId, due: datetime) -> LeaseTimer:
    return LeaseTimer(workflow_id=lease.workflow_id, job=lease.job, epoch=lease.epoch, due=due)


async def quietly(action: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):
        await action
