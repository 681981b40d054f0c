"""Connecting to NATS: settings, reconnect policy, and translation of connection errors."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS

import nats
from events import nats_speedups
from events.errors import ServerUnavailable

nats_speedups.install()

DEFAULT_URL = "nats://127.0.0.1:4222"
_log = structlog.get_logger("jetwork.nats")
_INITIAL_ATTEMPTS = 2
_ERROR_REPORT_INTERVAL = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsSettings:
    """How to reach NATS. ``from_env`` reads ``JETWORK_NATS_URL``.

    ``url`` may list several servers of one cluster, comma-separated
    (``nats://h1:4222,nats://h2:4222``): the client connects to any and fails over to the others.
    """

    url: str = DEFAULT_URL
    name: str = "jetwork"
    connect_timeout: float = 2.0
    # Keep reconnecting forever: engines and workers must survive a server restart by themselves.
    max_reconnect_attempts: int = -1
    reconnect_wait: float = 0.25

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        url: str | None = None,
        name: str = "jetwork",
    ) -> NatsSettings:
        return cls(url=url or environ.get("JETWORK_NATS_URL") or DEFAULT_URL, name=name)

    def servers(self) -> list[str]:
        """The server URLs in ``url`` (nats-py takes a list, not a comma-separated string)."""
        return [part.strip() for part in self.url.split(",") if part.strip()]


async def connect(settings: NatsSettings) -> NATS:
    """Connect, or raise ``ServerUnavailable`` naming the URL (never a raw nats-py error).

    The first connection is tried a bounded number of times so that a wrong URL fails fast;
    once connected, the client reconnects forever (``max_reconnect_attempts``), because engines,
    projectors and workers must survive a server restart by themselves.
    """
    connected = False
    client: list[NATS] = []

    async def on_disconnect() -> None:
        if client and (client[0].is_closed or client[0].is_draining):
            return  # our own close(): not worth a warning
        _log.warning("nats disconnected", url=settings.url, client=settings.name)

    async def on_reconnect() -> None:
        _log.info("nats reconnected", url=settings.url, client=settings.name)

    last_report = [0.0]

    async def on_error(exc: Exception) -> None:
        # Failures of the first connect are reported once, below. While reconnecting, nats-py
        # calls this on every attempt (every reconnect_wait): say it once every few seconds.
        now = time.monotonic()
        if connected and now - last_report[0] >= _ERROR_REPORT_INTERVAL:
            last_report[0] = now
            _log.warning("nats error", error=str(exc) or type(exc).__name__, client=settings.name)

    try:
        nc = await nats.connect(
            settings.servers(),
            name=settings.name,
            connect_timeout=settings.connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=_INITIAL_ATTEMPTS,
            reconnect_time_wait=settings.reconnect_wait,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
            max_outstanding_pings=3,
            ping_interval=5,
        )
    except Exception as exc:  # nats-py raises several unrelated types here
        raise ServerUnavailable(
            f"cannot reach the NATS server at {settings.url} ({exc or type(exc).__name__}). "
            "Is it running? Set JETWORK_NATS_URL or pass --nats URL, or leave both unset to "
            "start the embedded server."
        ) from None
    connected = True
    client.append(nc)
    # nats-py reads this option on every reconnect; from now on never give up.
    nc.options["max_reconnect_attempts"] = settings.max_reconnect_attempts
    return nc
