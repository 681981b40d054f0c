"""The jetwork client: start, watch, query, cancel and audit workflows from Python.

Example::

    async with Client.connect() as client:          # JETWORK_NATS_URL, else nats://127.0.0.1:4222
        handle = await client.start("examples/hello.yaml", inputs={"who": "you"})
        view = await handle.wait(timeout=60)
        print(view.status, view.jobs["greet"].outputs)
        for recorded in await client.history(handle.workflow_id):
            print(recorded.seq, recorded.event.event_type)

Status and history are read from the event log itself (consistent, no projection lag); listings,
workers and lag come from the projections. Every error is a ``JetworkError``: nats-py exceptions
are translated at this boundary.

``Client`` is made of its concerns: ``commands`` (start, cancel), ``control`` (pause, resume,
skip, retry a workflow), ``worker_control`` (pause and resume workers), ``rate_limits``
(operators' rate limits per handler or label set), ``reads`` (status,
history, listings), ``streams`` (wait, follow, subscribe, logs), on what ``base`` shares (the
connection and the lookups).
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any

import orjson

from events import namespaces
from events.connection import NatsSettings, connect
from events.errors import ServerRefused, ServerUnavailable
from projections.views import WorkflowView
from sdk.client.commands import ClientCommands
from sdk.client.control import ClientControl, ControlResult
from sdk.client.definitions import WorkflowSource
from sdk.client.deleting import ClientDeletion
from sdk.client.handle import RunHandle
from sdk.client.logs import Claim, LogLine
from sdk.client.namespaces import ClientNamespaces
from sdk.client.progress import ClientProgress
from sdk.client.rate_limits import ClientRateLimits
from sdk.client.registry import ClientRegistry
from sdk.client.signals import ClientSignals
from sdk.client.streams import ClientStreams, event_filter
from sdk.client.worker_control import ClientWorkerControl
from sdk.client.workers import WorkerList


class Client(
    ClientCommands,
    ClientSignals,
    ClientControl,
    ClientDeletion,
    ClientWorkerControl,
    ClientRateLimits,
    ClientNamespaces,
    ClientStreams,
    ClientRegistry,
    ClientProgress,
):
    """An async jetwork client on one NATS connection.

    Use ``async with Client.connect(url) as client`` (or ``client = await Client.connect()`` and
    ``await client.close()``), or wrap a connection you own with ``Client(nc)``.
    """

    @classmethod
    def connect(
        cls, url: str | None = None, *, name: str = "jetwork-client", namespace: str | None = None
    ) -> _Connecting:
        """Connect to ``url``, else ``JETWORK_NATS_URL``, else ``nats://127.0.0.1:4222``.

        Await it (``client = await Client.connect()``) or use it as an async context manager.
        Raises ``ServerUnavailable`` when the server cannot be reached. ``namespace``: the one
        it works in (else ``--namespace`` / ``JETWORK_NAMESPACE``, else ``default``).
        """
        # Checked before connecting: a bad --namespace or JETWORK_NAMESPACE connects nowhere.
        resolved = namespaces.require(namespace) if namespace else namespaces.process_namespace()
        return _Connecting(NatsSettings.from_env(url=url, name=name), resolved)

    def in_namespace(self, namespace: str) -> Client:
        """A client of another namespace on this client's connection (closing it leaves the
        connection open)."""
        return Client(self._nc, url=self._url, namespace=namespace)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _Connecting:
    """``Client.connect(...)``: awaitable, and an async context manager that closes on exit."""

    def __init__(self, settings: NatsSettings, namespace: str | None = None) -> None:
        self._settings = settings
        self._namespace = namespace
        self._client: Client | None = None

    async def _open(self) -> Client:
        try:
            nc = await connect(self._settings)
        except ServerRefused:
            raise  # it says which credentials to check
        except ServerUnavailable:
            # A client never starts a server: say what a client user can do.
            raise ServerUnavailable(
                f"cannot reach the NATS server at {self._settings.url}. Is `jetwork server` "
                "running? Point at another server with --nats URL or JETWORK_NATS_URL."
            ) from None
        try:
            return Client(
                nc, url=self._settings.url, owns_connection=True, namespace=self._namespace
            )
        except BaseException:
            await nc.close()
            raise

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def dumps_view(view: WorkflowView) -> str:
    """The stable JSON of a ``WorkflowView`` (what ``status --json`` prints), indented."""
    return orjson.dumps(view.to_json_dict(), option=orjson.OPT_INDENT_2).decode()


__all__ = [
    "Claim",
    "Client",
    "ControlResult",
    "LogLine",
    "RunHandle",
    "WorkerList",
    "WorkflowSource",
    "dumps_view",
    "event_filter",
]
