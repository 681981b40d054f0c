"""The label sets in use, recorded in KV ``jw_labelsets`` so that workers find them.

A worker watches the bucket and creates a durable consumer (``ls-<hash>``, on the events stream,
filtered to ``evt.*.*.job.*.JobQueued.<token>``, delivering everything from the start) for each
label set it serves. Since its consumer delivers every ``JobQueued`` of the set whenever it is
created, the record only has to appear eventually; the engine writes it before the set's first
``JobQueued`` anyway. Each engine remembers what it recorded, so this costs one KV create per
label set (priority level) and engine process.
"""

from __future__ import annotations

from collections.abc import Iterable

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events import subjects
from events.dispatch import LabelSet
from events.errors import StoreError


class LabelSets:
    def __init__(self, nc: NATS) -> None:
        self._js = nc.jetstream()
        self._known: set[str] = set()
        self._bucket: KeyValue | None = None

    async def register(self, routes: Iterable[str]) -> None:
        """Record every label set among ``routes`` not recorded by this process yet: a route is
        a ``JobQueued.route``, a label set's token or, at a priority other than the default, its
        level (``gpu.p9``: an entry and a consumer of its own)."""
        for route in routes:
            if route not in self._known:
                await self._create(LabelSet.of_route(route))
                self._known.add(route)

    async def _create(self, labelset: LabelSet) -> None:
        try:
            if self._bucket is None:
                self._bucket = await self._js.key_value(subjects.KV_LABELSETS)
            await self._bucket.create(labelset.consumer, labelset.encode())
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # Recorded before, by us or another engine. (nats-py's create reads the key back
            # after a wrong-last-sequence answer; on a cluster a follower that has not stored the
            # other engine's write yet answers "not found".)
            pass
        except (NatsTimeoutError, TimeoutError, NoRespondersError):
            raise StoreError(
                f"recording label set {labelset.token!r} timed out", retryable=True
            ) from None
        except APIError as exc:
            raise StoreError(
                f"cannot record label set {labelset.token!r}: {exc.description}"
            ) from None
