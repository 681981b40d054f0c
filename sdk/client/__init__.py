"""The Python client: ``Client`` does what the CLI does (start, status, wait, logs, subscribe …).

Modules: ``core`` (the client, made of ``commands``: start and cancel, ``reads``: status, history
and the projections, ``streams``: wait, follow, subscribe and logs, on ``base``: the connection
and shared lookups), ``handle`` (the run handle ``start`` returns), ``definitions`` (what
``start`` accepts), ``logs`` (reading a job's log), ``workers`` (live workers), ``translate``
(nats-py errors into jetwork's). Names are imported lazily, so importing one module stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdk.client.core import Client as Client
    from sdk.client.handle import RunHandle as RunHandle
    from sdk.client.streams import event_filter as event_filter

_SOURCES: dict[str, str] = {
    "Client": "sdk.client.core",
    "RunHandle": "sdk.client.handle",
    "event_filter": "sdk.client.streams",
}

__all__ = ["Client", "RunHandle", "event_filter"]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
