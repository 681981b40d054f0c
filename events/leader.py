"""Reads answered by a stream's leader: what the stream holds now, never a lagging replica's view.

Direct gets (``events/direct_get.py``) are answered by any replica, and a follower may lag. A
read that must see everything stored so far — an engine reading a workflow it is about to decide
for, where a missing event could mean deciding "nothing to do" — first asks the leader for the
newest sequence on its filter (``$JS.API.STREAM.MSG.GET``, which only the leader answers; its
``last_by_subj`` takes wildcards), then reads by direct get until it reaches that sequence.
"""

from __future__ import annotations

from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from events.errors import StoreError

_NO_MESSAGE = 10037


async def newest_seq(nc: NATS, stream: str, filter_subject: str, *, timeout: float) -> int:
    """The sequence of the newest message on ``filter_subject`` (0: none), from the leader."""
    request = orjson.dumps({"last_by_subj": filter_subject})
    try:
        reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", request, timeout=timeout)
    except (NatsTimeoutError, NoRespondersError) as exc:
        raise StoreError(f"no leader of {stream} answered ({exc!r})", retryable=True) from None
    answer: dict[str, Any] = orjson.loads(reply.data)
    error = answer.get("error")
    if error is None:
        return int(answer["message"]["seq"])
    if error.get("err_code") == _NO_MESSAGE:
        return 0
    raise StoreError(
        f"asking the leader of {stream} for {filter_subject}: {error.get('description')}",
        retryable=True,
    )
