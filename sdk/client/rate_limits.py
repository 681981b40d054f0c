"""``Client.set_rate_limit`` / ``rate_limits`` / ``delete_rate_limit``: an operator's limit on how
many attempts of a handler or label set start per window, across every worker (Conductor's
``rateLimitPerFrequency``). The limit is a key in KV ``jw_control`` that workers and gateways
follow; starts are counted in KV ``jw_rates`` (``sdk/worker/rate_limits.py``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final

from nats.js.errors import KeyNotFoundError, NoKeysError

from events import namespaces, subjects
from events.definition import MAX_RATE_WINDOW, RateLimit
from events.labels import token_of
from sdk.client.control import default_operator
from sdk.client.reads import ClientReads
from sdk.client.translate import translated
from sdk.errors import InvalidArgument
from sdk.worker.rate_limits import PREFIX, LimitRecord, counter_key, limit_key, window_of

_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class RateLimitView:
    """An operator's limit, and the starts counted in its current window."""

    kind: str  # handler | labels
    name: str  # the handler, or the label set's token
    limit: int
    per: float
    started_in_window: int
    window_ends_in: float
    by: str
    reason: str

    @property
    def full(self) -> bool:
        return self.started_in_window >= self.limit

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "limit": self.limit, "per": self.per,
            "started_in_window": self.started_in_window,
            "window_ends_in": round(self.window_ends_in, 3), "full": self.full,
            "by": self.by, "reason": self.reason,
        }  # fmt: skip


def limited_key(handler: str | None, labels: tuple[str, ...] | None) -> tuple[str, str]:
    """(kind, name) for ``--handler NAME`` or ``--labels a,b``; ``InvalidArgument`` otherwise."""
    if (handler is None) == (labels is None):
        raise InvalidArgument("name either a handler (--handler NAME) or labels (--labels a,b)")
    if handler is not None:
        if not _NAME.match(handler):
            raise InvalidArgument(
                f"{handler!r} is not a valid handler name (letters, digits, _, -)"
            )
        return "handler", handler
    assert labels is not None
    bad = [label for label in labels if not _NAME.match(label)]
    if bad or not labels:
        raise InvalidArgument(f"not valid labels: {', '.join(bad) or 'none given'}")
    return "labels", token_of(labels, None)


class ClientRateLimits(ClientReads):
    async def set_rate_limit(
        self,
        *,
        limit: int,
        per: float,
        handler: str | None = None,
        labels: tuple[str, ...] | None = None,
        reason: str = "",
    ) -> str:
        """At most ``limit`` starts of ``handler``'s jobs (or the label set ``labels``' jobs) per
        ``per`` seconds, across every worker. Returns the key set (``limit.handler.<name>``)."""
        kind, name = limited_key(handler, labels)
        kind = namespaces.key_prefix(self._ns) + kind  # the client's namespace's limit
        if limit < 1 or not 0 < per <= MAX_RATE_WINDOW:
            raise InvalidArgument(
                f"a limit is >= 1 per a window of up to 1d, got {limit} per {per}s"
            )
        record = LimitRecord.now(RateLimit(limit=limit, per=per), by=default_operator(),
                                 reason=reason)  # fmt: skip
        key = limit_key(kind, name)
        with translated("setting a rate limit", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            await kv.put(key, record.model_dump_json().encode())
        return key

    async def delete_rate_limit(
        self, *, handler: str | None = None, labels: tuple[str, ...] | None = None
    ) -> bool:
        """Lift an operator's limit; False if there was none."""
        kind, name = limited_key(handler, labels)
        key = limit_key(namespaces.key_prefix(self._ns) + kind, name)
        with translated("deleting a rate limit", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
            await kv.delete(key)
        return True

    async def rate_limits(self) -> list[RateLimitView]:
        """Every operator's limit in the client's namespace, with the starts counted in its
        current window."""
        scope = PREFIX + namespaces.key_prefix(self._ns)
        with translated("reading rate limits", url=self._url):
            js = self._nc.jetstream()
            control = await js.key_value(subjects.KV_CONTROL)
            counters = await js.key_value(subjects.KV_RATES)
            try:
                keys = [k for k in await control.keys() if _in_scope(k, scope)]
            except NoKeysError:  # nats-py's answer for an empty bucket
                keys = []
            views = []
            for key in sorted(keys):
                try:
                    entry = await control.get(key)
                except KeyNotFoundError:
                    continue
                if not entry.value:
                    continue
                views.append(
                    await _view(key, scope, LimitRecord.model_validate_json(entry.value), counters)
                )
        return views


def _in_scope(key: str, scope: str) -> bool:
    """A limit key of this scope (``limit.`` + the namespace's prefix), not of another namespace
    (``limit.ns.<other>.``, which the default scope's prefix also begins)."""
    if not key.startswith(scope):
        return False
    return key.removeprefix(scope).split(".", 1)[0] in ("handler", "labels")


async def _view(key: str, scope: str, record: LimitRecord, counters: Any) -> RateLimitView:
    kind, name = key.removeprefix(scope).split(".", 1)
    at = time.time()
    window = window_of(at, record.per)
    counted_as = scope.removeprefix(PREFIX) + kind
    try:
        counted = int(
            (await counters.get(counter_key(counted_as, name, record.per, window))).value or 0
        )
    except KeyNotFoundError:
        counted = 0
    return RateLimitView(kind, name, record.limit, record.per, counted,
                         (window + 1) * record.per - at, record.by, record.reason)  # fmt: skip
