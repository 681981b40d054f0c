"""Engine settings: small, frozen, passed in explicitly; env loading in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    # Messages taken from the partitions' consumers per batch (decided and appended together).
    batch: int = 512
    # How long a delivered message may stay unacknowledged before JetStream delivers it again;
    # short, so that what a killed owner held comes back soon after its partitions move.
    ack_wait: float = 5.0
    # Messages a partition consumer may have delivered and not acknowledged.
    max_ack_pending: int = 20_000
    # Workflow states kept in memory (least recently used ones are dropped and read again).
    cache_size: int = 50_000
    # Longest wait of an idle loop before it looks again.
    poll_interval: float = 1.0
    # Partition leases: held this long after the last confirmed renewal, renewed this often.
    lease_ttl: float = 4.0
    renew_every: float = 1.0
    # Timers due within this many seconds are also timed in process (schedules fire up to 250 ms
    # late); 0 leaves them to their durable schedules alone.
    in_process_horizon: float = 120.0

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
            ack_wait=number("JETWORK_ENGINE_ACK_WAIT", cls.ack_wait),
            cache_size=int(number("JETWORK_ENGINE_CACHE_SIZE", cls.cache_size)),
            lease_ttl=number("JETWORK_ENGINE_LEASE_TTL", cls.lease_ttl),
        )
