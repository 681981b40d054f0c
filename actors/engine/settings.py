"""Engine settings: small, frozen, passed in explicitly; env loading in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from events.schedules import DEFAULT_HORIZON


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    # Messages fetched per pull from each consumer.
    batch: int = 256
    # Workflows processed at once (one task per workflow), across all batches in flight.
    concurrency: int = 64
    # Batches being processed at once per consumer: pulling goes on while earlier ones finish.
    batches_in_flight: int = 4
    # How long a message may be processed before JetStream redelivers it to another engine.
    ack_wait: float = 30.0
    # Folded workflow states kept in memory (least recently used ones are dropped).
    cache_size: int = 20_000
    # Wait of an idle fetch before asking again.
    poll_interval: float = 1.0
    # Durable consumer names; engines sharing them share the work.
    consumer_prefix: str = "engine"
    # Timers and delayed dispatches due within this many seconds also run in-process, exactly
    # on time; their durable schedules (up to 250 ms late) remain the fallback. 0: schedules only.
    near_timers: float = DEFAULT_HORIZON

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> EngineSettings:
        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None

        return cls(
            batch=int(number("JETWORK_ENGINE_BATCH", cls.batch)),
            concurrency=int(number("JETWORK_ENGINE_CONCURRENCY", cls.concurrency)),
            ack_wait=number("JETWORK_ENGINE_ACK_WAIT", cls.ack_wait),
            cache_size=int(number("JETWORK_ENGINE_CACHE_SIZE", cls.cache_size)),
        )
