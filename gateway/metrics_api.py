"""``GET /metrics``: the Prometheus metrics of the process the gateway runs in.

In ``jetwork server`` that is the engine's, the projector's and the gateway's together (one
registry per process, ``telemetry.metrics``). No token, like ``/healthz``: metrics name
workflows and label sets, never inputs, outputs or logs.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

CONTENT_TYPE: Final = "text/plain"
"""As the OpenAPI document names it (the answer's header adds the format's version)."""


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
