"""Connecting to NATS: settings, reconnect policy, and translation of connection errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.client import Client as NATS

from events import flusher, inline_delivery, nats_speedups, wire_parser
from events.errors import ServerRefused, ServerUnavailable
from events.nats_auth import NatsAuth, process_auth

nats_speedups.install()
inline_delivery.install()
flusher.install()
wire_parser.install()

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
    # Who this process is to NATS (None: the process's, from options or JETWORK_NATS_* variables).
    auth: NatsAuth | None = None
    # Told when the connection drops and when it is back (a worker's notices: sdk.worker.revoked).
    on_disconnect: Callable[[], None] | None = field(default=None, compare=False)
    on_reconnect: Callable[[], None] | None = field(default=None, compare=False)

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
        if settings.on_disconnect is not None:
            settings.on_disconnect()
        if not connected or (client and (client[0].is_closed or client[0].is_draining)):
            return  # our own close(): not worth a warning
        _log.warning("nats disconnected", url=settings.url, client=settings.name)

    async def on_reconnect() -> None:
        _log.info("nats reconnected", url=settings.url, client=settings.name)
        if settings.on_reconnect is not None:
            settings.on_reconnect()

    last_report = [0.0]
    first_errors: list[Exception] = []  # what the first attempts met (an auth refusal …)

    async def on_error(exc: Exception) -> None:
        # Failures of the first connect are reported once, below. While reconnecting, nats-py
        # calls this on every attempt (every reconnect_wait): say it once every few seconds.
        if not connected:
            first_errors.append(exc)
        now = time.monotonic()
        if connected and now - last_report[0] >= _ERROR_REPORT_INTERVAL:
            last_report[0] = now
            _log.warning("nats error", error=str(exc) or type(exc).__name__, client=settings.name)

    auth = settings.auth if settings.auth is not None else process_auth()
    extra = auth.options()  # InvalidNatsAuth (a JetworkError) before any attempt
    if "tls" not in extra and any(url.startswith("tls://") for url in settings.servers()):
        # nats-py's own context for a tls:// URL waits for ever on a certificate it does not
        # trust; the system's default one refuses it at once.
        extra["tls"] = ssl.create_default_context()
    options: dict[str, Any] = {
        **extra,
        "name": settings.name,
        "connect_timeout": settings.connect_timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": _INITIAL_ATTEMPTS,
        "reconnect_time_wait": settings.reconnect_wait,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        "max_outstanding_pings": 3,
        "ping_interval": 5,
    }
    nc = NATS()
    # Bounded: after a TLS handshake that failed on a certificate nats-py (2.16) waits for ever.
    budget = (settings.connect_timeout + settings.reconnect_wait) * (_INITIAL_ATTEMPTS + 1) + 1
    try:
        async with asyncio.timeout(budget):
            await nc.connect(settings.servers(), **options)
    except Exception as exc:  # nats-py raises several unrelated types here; or our timeout
        with contextlib.suppress(Exception):
            await nc.close()
        refusal = next((e for e in [exc, *first_errors] if _refused(e)), None)
        if refusal is not None:
            raise ServerRefused(
                f"the NATS server at {settings.url} refused the connection "
                f"({str(refusal).removeprefix('nats: ')}). Check the credentials "
                "(--nats-creds, --nats-nkey, --nats-user/--nats-password, --nats-token) and "
                "TLS files (--tls-ca, --tls-cert/--tls-key), or their JETWORK_NATS_* variables"
            ) from None
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


def _refused(exc: BaseException) -> bool:
    """The server answered and said no: who we are, or a TLS handshake that failed."""
    if isinstance(exc, ssl.SSLError):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("authorization", "authentication", "certificate"))
