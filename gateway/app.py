"""The gateway's ASGI application: routes from ``gateway.routes``, started on one NATS connection.

``create_app(settings, nats_url=...)`` connects at start-up (or uses ``nc``), ensures the streams
and buckets, follows the label sets in use and serves until shut down. After a reconnection of
its connection its KV watches are made afresh (``watch_again``; the owner of a connection handed
in calls it from that connection's ``on_reconnect``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from events import subjects
from events.connection import NatsSettings, connect
from events.errors import JetworkError
from events.hooks import GATEWAY_SECRET_KEY, HookSigner
from events.nats_auth import NatsAuth
from events.topology import ensure_topology
from gateway.context import GatewayContext
from gateway.labelsets import LabelSets
from gateway.lease_ids import LeaseSigner
from gateway.leases import Leases
from gateway.openapi import document, reference_page
from gateway.presence import HttpPresence
from gateway.routes import OPERATIONS
from gateway.settings import CONSUMER_LEASE, GatewaySettings
from gateway.ui import ui_routes
from gateway.web import ApiError, Json, guarded, on_error
from sdk.client import Client

SECRET_KEY = GATEWAY_SECRET_KEY


def create_app(
    settings: GatewaySettings, *, nats_url: str | None = None, nc: NATS | None = None
) -> Starlette:
    """The application; connects to ``nats_url`` (or uses ``nc``, left open) when it starts."""
    routes: list[BaseRoute] = [
        Route(
            op.path,
            guarded(op.role, op.endpoint, settings.tokens),
            methods=[op.method],
            name=op.name,
        )
        for op in OPERATIONS
    ]
    doc = document(version=_version(), secured=bool(settings.tokens))
    page = reference_page(doc)

    async def openapi(_: Request) -> Response:
        return Json(doc)

    async def docs(_: Request) -> Response:
        return HTMLResponse(page)

    routes += [
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        *ui_routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own = nc is None
        conn = nc or await connect(
            gateway_nats(nats_url, on_reconnect=functools.partial(watch_again, app))
        )
        labelsets: LabelSets | None = None
        presence: HttpPresence | None = None
        try:
            js = conn.jetstream()
            await ensure_topology(js)
            secret = settings.lease_secret or await shared_secret(conn)
            labelsets = LabelSets(js)
            await labelsets.start()
            presence = HttpPresence(js)
            presence.start()
            leases = Leases(
                conn,
                labelsets=labelsets,
                signer=LeaseSigner(secret),
                consumer_lease=CONSUMER_LEASE,
            )
            await leases.start()
            app.state.gateway = GatewayContext(
                nc=conn,
                client=Client(conn),
                leases=leases,
                presence=presence,
                settings=settings,
                hooks=HookSigner(secret),
            )
            yield
        finally:
            gateway = getattr(app.state, "gateway", None)
            if gateway is not None:
                await gateway.leases.stop()
            if presence is not None:
                await presence.stop()
            if labelsets is not None:
                await labelsets.stop()
            if own:
                with contextlib.suppress(Exception):
                    await conn.drain()

    # Expected errors are answered by the exception middleware; anything else by the server
    # error middleware (a JSON 500, and the traceback in the log).
    handlers: dict[Any, Any] = {
        ApiError: on_error,
        JetworkError: on_error,
        HTTPException: on_error,
        Exception: on_error,
    }
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)


def gateway_nats(
    nats_url: str | None,
    *,
    auth: NatsAuth | None = None,
    on_reconnect: Callable[[], None] | None = None,
) -> NatsSettings:
    """The gateway's own connection (``JETWORK_NATS_URL`` unless ``nats_url``)."""
    settings = NatsSettings.from_env(url=nats_url, name="jetwork-gateway")
    return replace(settings, auth=auth, on_reconnect=on_reconnect)


def watch_again(app: Starlette) -> None:
    """The gateway's hook for a reconnection: its label sets and rate limits are watched
    afresh (``Leases.watch_again``). Before the gateway has started there is nothing to do:
    its start reads them afresh."""
    gateway: GatewayContext | None = getattr(app.state, "gateway", None)
    if gateway is not None:
        gateway.leases.watch_again()


async def shared_secret(nc: NATS) -> bytes:
    """The lease-signing key every gateway on this NATS shares (created once, in KV)."""
    kv = await nc.jetstream().key_value(subjects.KV_GATEWAY)
    for _ in range(3):
        try:
            return bytes((await kv.get(SECRET_KEY)).value or b"")
        except KeyNotFoundError:
            pass
        with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
            await kv.create(SECRET_KEY, LeaseSigner.new_secret())
    raise RuntimeError("cannot read or create the lease secret in KV jw_gateway")


def _version() -> str:
    try:
        return version("jetwork")
    except PackageNotFoundError:
        return "0"
