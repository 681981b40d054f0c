"""The HTTP gateway: workflow-graph's worker protocol and jetwork's client API over HTTP + JSON.

A thin edge over the event log (docs/http.md): it keeps no state of its own beyond what the log
and KV hold, so several gateways may stand behind a load balancer and a killed one loses nothing.

- ``gateway.app.create_app``: the ASGI application (Starlette);
- ``gateway.serve``: running it (uvicorn), alone or inside ``jetwork server``;
- ``gateway.leases``: the one module that knows how jobs are dispatched and leases kept.
"""
