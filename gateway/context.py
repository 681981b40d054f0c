"""What every route uses: the connection, the client, the leases, presence and settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from nats.aio.client import Client as NATS
from starlette.requests import Request

from events import namespaces
from events.hooks import HookSigner
from gateway.leases import Leases
from gateway.presence import HttpPresence
from gateway.settings import GatewaySettings
from sdk.client import Client


@dataclass(frozen=True, slots=True)
class GatewayContext:
    nc: NATS
    client: Client
    leases: Leases
    presence: HttpPresence
    settings: GatewaySettings
    hooks: HookSigner | None = None  # verifies webhook tokens (``gateway.hooks_api``)
    # A client per namespace a request named, on the same connection (one each: a client's
    # reader keeps its reply subscriptions for the connection's life).
    clients: dict[str, Client] = field(default_factory=dict)

    def in_namespace(self, name: str) -> GatewayContext:
        if name == self.client.namespace:
            return self
        client = self.clients.get(name)
        if client is None:
            client = self.clients[name] = self.client.in_namespace(name)
        return replace(self, client=client)


NAMESPACE_HEADER: Final = "jetwork-namespace"


def request_namespace(request: Request) -> str | None:
    """The namespace a request names: header ``Jetwork-Namespace``, else query ``namespace``
    (None: the gateway's own, ``default`` unless it was started with another);
    ``InvalidNamespace`` (422) for a name that is not one."""
    name = request.headers.get(NAMESPACE_HEADER) or request.query_params.get("namespace")
    return None if name is None else namespaces.require(name, where="namespace")


def context(request: Request) -> GatewayContext:
    """The gateway's context, with the client of the namespace the request names."""
    ctx: GatewayContext = request.app.state.gateway
    name = request_namespace(request)
    return ctx if name is None else ctx.in_namespace(name)
