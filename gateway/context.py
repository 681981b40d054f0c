"""What every route uses: the connection, the client, the leases, presence and settings."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client as NATS
from starlette.requests import Request

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


def context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx
