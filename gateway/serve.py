"""Running the gateway with uvicorn inside a running event loop (``jetwork server`` runs it
beside the engine, ``jetwork gateway`` alone): start, stop, no signal handling of its own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Final

import structlog
import uvicorn
from nats.aio.client import Client as NATS
from starlette.applications import Starlette

from events.connection import connect
from events.errors import JetworkError
from events.nats_auth import NatsAuth
from gateway.app import create_app, gateway_nats, watch_again
from gateway.settings import GatewaySettings

STOP_GRACE: Final = 3.0
"""Seconds open requests (an SSE stream, a long-poll) may take to end at shutdown."""
_log = structlog.get_logger("jetwork.gateway")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the process that runs us handles signals and calls ``stop``


class HttpGateway:
    """The gateway on ``settings.host:settings.port`` (port 0: any free one, see ``url``)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        nats_url: str | None = None,
        nc: NATS | None = None,
        auth: NatsAuth | None = None,
    ) -> None:
        self.settings = settings
        self._nats_url = nats_url
        self._nc = nc
        self._auth = auth
        self._owns_connection = nc is None
        self._app: Starlette | None = None
        self._server: _Server | None = None
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    def watch_again(self) -> None:
        """The hook for a reconnection of the gateway's connection (set on the one it opens;
        the owner of a connection handed in calls it): its KV watches are made afresh."""
        if self._app is not None:
            watch_again(self._app)

    def _make_server(self, nc: NATS) -> _Server:
        self._app = create_app(self.settings, nc=nc)
        config = uvicorn.Config(
            self._app,
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=int(STOP_GRACE),
            server_header=False,
        )
        return _Server(config)

    @property
    def url(self) -> str:
        host = self.settings.host
        port = self._socket.getsockname()[1] if self._socket is not None else self.settings.port
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def start(self) -> None:
        """Bind, start the application (connect to NATS), serve in the background.

        Raises ``JetworkError`` with the reason when the address cannot be bound or the
        application cannot start.
        """
        problem = self.settings.check_exposure()
        if problem is not None:
            raise JetworkError(problem)
        if self.settings.insecure and not self.settings.loopback and not self.settings.tokens:
            _log.warning(
                "SERVING HTTP WITHOUT TOKENS ON A NON-LOOPBACK ADDRESS (--insecure): anyone who "
                "reaches it may start, cancel and run jobs",
                address=f"{self.settings.host}:{self.settings.port}",
            )
        self._socket = _bind(self.settings.host, self.settings.port)
        if self._nc is None:  # before uvicorn: an unreachable server is one clear error
            try:
                self._nc = await connect(
                    gateway_nats(self._nats_url, auth=self._auth, on_reconnect=self.watch_again)
                )
            except BaseException:
                self._socket.close()
                raise
        self._server = server = self._make_server(self._nc)
        self._task = asyncio.get_running_loop().create_task(self._run(self._socket), name="jw-http")
        while not server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise JetworkError(f"the HTTP gateway on {self.url} stopped while starting")
            await asyncio.sleep(0.02)
        _log.info("HTTP gateway serving", url=self.url, tokens=self.settings.tokens.roles())

    async def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            await self._server.serve(sockets=[sock])
        except SystemExit:
            raise JetworkError(
                f"the HTTP gateway on {self.url} could not start (see the log above)"
            ) from None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._socket is not None:
            self._socket.close()
        if self._owns_connection and self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise JetworkError(f"cannot serve HTTP on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock
