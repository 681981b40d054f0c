"""Rate limits: at most ``limit`` attempts start per window of ``per``, across every worker.

A limit applies to a handler (jobs with ``uses: NAME``) or a label set (``run`` jobs routed by
their labels). It comes from the job itself (``rate_limit: {limit, per}`` in the definition,
carried in ``JobSpec.rate_limit``) or from an operator (``jetwork limits set``: KV ``jw_control``
``limit.handler.<name>`` / ``limit.labels.<token>``, followed by every worker and gateway from
its start, as pause switches are); when both exist, both hold.

Counting is one KV key per limit and window in bucket ``jw_rates`` (``<kind>.<name>.<per>ms.<n>``,
window ``n = floor(epoch seconds / per)``), taken by compare-and-set before a claim: however many
workers race, a window admits at most ``limit`` starts. Fixed windows on the epoch: a span of
``per`` that straddles two windows may see up to twice the limit (as Conductor's windows do).
A refused start is released (``nak``) until the window ends, at most ``RECHECK`` seconds, so a
limit lifted or raised is noticed soon; the claim is tried again then. A start admitted whose
claim is then refused (the job went elsewhere) still counts: limits err on the safe side.
Worker clocks are assumed close (NTP); a window is each worker's own reading of the time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from events import namespaces, subjects
from events.catalog import JobSpec
from events.definition import RateLimit
from events.labels import token_of
from sdk.worker.control_keys import ControlKeys

_log = structlog.get_logger("jetwork.worker")
PREFIX: Final = "limit."
RECHECK: Final = 5.0
_TRIES: Final = 16


def limit_key(kind: str, name: str) -> str:
    """The operator's switch for a handler (``kind`` ``handler``) or label set (``labels``)."""
    return f"{PREFIX}{kind}.{name}"


def limited_as(spec: JobSpec) -> tuple[str, str]:
    """What a job's starts count against: its handler, else its label set's token, in its
    namespace (kind ``ns.<namespace>.handler`` outside the default one: ``events.namespaces``)."""
    scope = namespaces.key_prefix(spec.namespace)
    if spec.uses is not None:
        return scope + "handler", spec.uses
    return scope + "labels", token_of(spec.labels, None)


def window_of(at: float, per: float) -> int:
    return int(at // per)


def counter_key(kind: str, name: str, per: float, window: int) -> str:
    return f"{kind}.{name}.{round(per * 1000)}ms.{window}"


class LimitRecord(BaseModel):
    """An operator's limit (the value of a ``limit.`` key): the limit, who set it, when, why."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    limit: int
    per: float
    by: str = ""
    reason: str = ""
    at: datetime

    @property
    def rate(self) -> RateLimit:
        return RateLimit(limit=self.limit, per=self.per)

    @classmethod
    def now(cls, rate: RateLimit, *, by: str, reason: str) -> LimitRecord:
        return cls(limit=rate.limit, per=rate.per, by=by, reason=reason, at=datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A start refused: which limit is full and for how long (seconds)."""

    key: str
    rate: RateLimit
    wait: float


class RateLimiter:
    """Admits starts within every limit that applies, counting them in KV ``jw_rates``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._operator: dict[str, RateLimit] = {}
        self._counters: KeyValue | None = None
        self._limits = ControlKeys(PREFIX, self.record, what="rate limits")

    def limits_for(self, spec: JobSpec) -> list[RateLimit]:
        """The job's own limit and the operator's for its handler or label set, if any."""
        found = [spec.rate_limit] if spec.rate_limit is not None else []
        operator = self._operator.get(limit_key(*limited_as(spec)))
        if operator is not None and operator != spec.rate_limit:
            found.append(operator)
        return found

    async def admit(self, spec: JobSpec) -> Refusal | None:
        """None: the start is counted in every limit's window; else the first limit that is full."""
        limits = self.limits_for(spec)
        if not limits:
            return None
        assert self._counters is not None, "start() the limiter first"
        kind, name = limited_as(spec)
        for rate in limits:
            at = self._clock()
            window = window_of(at, rate.per)
            if not await self._take(counter_key(kind, name, rate.per, window), rate):
                wait = min((window + 1) * rate.per - at, RECHECK)
                return Refusal(f"{kind}.{name}", rate, max(wait, 0.05))
        return None

    async def _take(self, key: str, rate: RateLimit) -> bool:
        """One more start in this window, by compare-and-set; False when it is full."""
        assert self._counters is not None
        for _ in range(_TRIES):
            try:
                entry = await self._counters.get(key)
            except KeyNotFoundError:
                with contextlib.suppress(KeyWrongLastSequenceError):
                    await self._counters.create(key, b"1")
                    return True
                continue
            count = int(entry.value or b"0")
            if count >= rate.limit:
                return False
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self._counters.update(key, str(count + 1).encode(), last=entry.revision)
                return True
        return False  # lost every race: treat as full, released and tried again shortly

    # --- operator limits, followed from KV ------------------------------------------------------

    def record(self, key: str, value: bytes | None) -> None:
        if value:
            try:
                rate = LimitRecord.model_validate_json(value).rate
            except ValueError:
                _log.warning("unreadable rate limit ignored", key=key)
                return
            self._operator[key] = rate
        else:
            self._operator.pop(key, None)

    async def start(self, js: JetStreamContext) -> None:
        """Open the counters and read the operators' limits set now, then follow them."""
        self._counters = await js.key_value(subjects.KV_RATES)
        await self._limits.start(js)

    async def watch_again(self, js: JetStreamContext) -> None:
        """Follow the operators' limits afresh after a reconnection (``control_keys.py``)."""
        await self._limits.watch_again(js)

    async def stop(self) -> None:
        await self._limits.stop()
