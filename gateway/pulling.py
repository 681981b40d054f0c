"""One dispatch message for one claim: a pull request of one message per label set consumer.

Each claim subscribes a fresh inbox (a message keeps its own subject, so a subscription shared
by concurrent claims could not tell whose pull a message answers), sends a pull request of one
message to each consumer of the label sets the worker serves (``no_wait`` when the claim does not
long-poll, else ``expires``) and takes the first message. Once it has one, the other requests are
dropped by unsubscribing with a round trip (the server serves no request without interest, and
whatever it sent before is in hand and released with ``nak``): no message is left in flight to
an inbox nobody reads, which would wait out the consumer's ack wait before anyone saw it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Final

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.dispatch import LabelSet
from sdk.worker.pull import ensure_consumer

_NANOS: Final = 1_000_000_000
WATCHDOG_MARGIN: Final = 2.0
DRAIN_TIMEOUT: Final = 2.0

_log = structlog.get_logger("jetwork.gateway")


class OneShotPuller:
    def __init__(
        self, nc: NATS, *, consumer_lease: float, stream: str = subjects.JOBS_STREAM
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._consumer_lease = consumer_lease
        self._ensured: set[str] = set()
        self._ids = itertools.count(1)

    async def ensure(self, labelset: LabelSet) -> None:
        """Create the label set's consumer if absent (once per gateway and label set)."""
        if labelset.consumer in self._ensured:
            return
        await ensure_consumer(
            self._nc, labelset, lease_ttl=self._consumer_lease, stream=self._stream
        )
        self._ensured.add(labelset.consumer)

    def forget(self, labelset: LabelSet) -> None:
        """The consumer seems gone (deleted by an operator): ensure it again next time."""
        self._ensured.discard(labelset.consumer)

    async def pull_one(self, labelsets: Sequence[LabelSet], *, wait: float) -> Msg | None:
        """The first dispatch any of ``labelsets`` delivers within ``wait`` seconds, or None."""
        if not labelsets:
            return None
        for labelset in labelsets:
            await self.ensure(labelset)
        inbox = f"{self._nc.new_inbox()}.{next(self._ids)}"
        got: list[Msg] = []
        open_requests = {labelset.consumer: labelset for labelset in labelsets}
        done = asyncio.Event()

        async def on_reply(msg: Msg) -> None:
            status = msg.headers.get("Status") if msg.headers and not msg.reply else None
            consumer = msg.subject.rsplit(".", 1)[-1] if status is not None else _consumer(msg)
            ended = open_requests.pop(consumer, None)
            if status is None:
                got.append(msg)
                done.set()
            elif status == "100":
                if ended is not None:
                    open_requests[consumer] = ended  # an idle heartbeat ends nothing
                return
            elif status not in ("404", "408") and ended is not None:
                _log.info("pull request ended", consumer=consumer, status=status,
                          description=(msg.headers or {}).get("Description", ""))  # fmt: skip
                if status == "409" or status == "503":
                    self.forget(ended)
            if not open_requests:
                done.set()

        sub = await self._nc.subscribe(f"{inbox}.*", cb=on_reply)
        try:
            body = (
                {"batch": 1, "no_wait": True}
                if wait <= 0
                else {"batch": 1, "expires": int(wait * _NANOS)}
            )
            payload = orjson.dumps(body)
            for consumer in list(open_requests):
                await self._nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{consumer}",
                    payload,
                    reply=f"{inbox}.{consumer}",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(wait, 0) + WATCHDOG_MARGIN)
        finally:
            if open_requests:
                # Drop the others: UNSUB plus a round trip, so what the server sent before it
                # saw the UNSUB is in hand (and released below), not in flight to nobody.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sub.drain(), DRAIN_TIMEOUT)  # type: ignore[no-untyped-call]
            else:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        if not got:
            return None
        for extra in got[1:]:
            with contextlib.suppress(Exception):
                await extra.nak()
        return got[0]


def _consumer(msg: Msg) -> str:
    try:
        return str(msg.metadata.consumer)
    except Exception:  # not a JetStream delivery: match no request
        return ""
