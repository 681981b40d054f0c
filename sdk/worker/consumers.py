"""A label set's durable pull consumer on the events stream: created if absent, its lease read.

Its ``ack_wait`` is the lease of the jobs it delivers, one per label set: workers sharing a
label set share it, so the first to create the consumer sets it and the others use it.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from events import subjects
from events.dispatch import LabelSet
from events.errors import StoreError

MAX_ACK_PENDING: Final = 1 << 16
"""Messages one consumer may have out at once, across all its workers (leased, not acked)."""
NANOS: Final = 1_000_000_000
_CONSUMER_EXISTS: Final = 10148


async def ensure_consumer(
    nc: NATS,
    labelset: LabelSet,
    *,
    lease_ttl: float,
    stream: str = subjects.EVENTS_STREAM,
    timeout: float = 5.0,
) -> float:
    """Create the label set's durable pull consumer if absent; return its lease (ack wait).

    Create-if-absent (``action: create``): a consumer made by another worker with another lease
    is used as it is, since workers sharing a label set share one lease; the caller gets the
    lease that really applies.
    """
    name = labelset.consumer
    config = {
        "durable_name": name,
        "name": name,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(lease_ttl * NANOS),
        "max_deliver": -1,
        "filter_subject": labelset.subject,
        "max_ack_pending": MAX_ACK_PENDING,
    }
    request = {"stream_name": stream, "config": config, "action": "create"}
    # The filter in the subject lets a least-privilege worker role create only dispatch
    # consumers (events/roles.py): the server checks it against the config's.
    subject = f"$JS.API.CONSUMER.CREATE.{stream}.{name}.{labelset.subject}"
    reply = await _api(nc, subject, orjson.dumps(request), timeout)
    error = reply.get("error")
    if error is None:
        return lease_ttl
    if int(error.get("err_code", 0)) != _CONSUMER_EXISTS:
        raise StoreError(
            f"cannot create consumer {name} for label set {labelset.token!r}: "
            f"{error.get('description')}"
        )
    info = await _api(nc, f"$JS.API.CONSUMER.INFO.{stream}.{name}", b"", timeout)
    if "error" in info:
        raise StoreError(f"cannot read consumer {name}: {info['error'].get('description')}")
    return int(info["config"]["ack_wait"]) / NANOS


async def _api(nc: NATS, subject: str, payload: bytes, timeout: float) -> dict[str, Any]:
    try:
        msg = await nc.request(subject, payload, timeout=timeout)
    except (NatsTimeoutError, TimeoutError, NatsError) as exc:
        raise StoreError(f"JetStream API {subject} failed: {exc!r}", retryable=True) from None
    reply: dict[str, Any] = orjson.loads(msg.data)
    return reply
