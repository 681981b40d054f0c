"""The hook URLs of jobs waiting for a webhook, in the views ``status`` returns.

A hook token is signed with the gateway's secret (``events.hooks``): the client reads it where
the gateway does (``JETWORK_HTTP_LEASE_SECRET``, else KV ``jw_gateway``), never creating it.
Where it cannot (no gateway ever started, or a NATS user not allowed to read ``jw_gateway``, as
the ``client`` role of ``jetwork server --auth``), ``wait.hook`` stays None and ``status`` says
so; the gateway's own status (``GET /api/workflows/{id}``) always has it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Final

import nats.errors
from nats.aio.client import Client as NATS

from actors.workflow import WorkflowState
from events import subjects
from events.hooks import GATEWAY_SECRET_KEY, SECRET_ENV, Hook, HookSigner
from projections.views import WorkflowView

# How long a failed look-up of the secret is believed (a gateway may start meanwhile).
_RETRY_AFTER: Final = 30.0
_LOOKUP_TIMEOUT: Final = 1.0


class HookUrls:
    """Fills in the hook URLs of a client's views (the secret looked up once)."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._signer: HookSigner | None = None
        self._missed_at = -math.inf

    async def add(self, view: WorkflowView, state: WorkflowState) -> WorkflowView:
        """``view`` with the hook path of every job waiting for a webhook."""
        waiting = [
            name
            for name, job in view.jobs.items()
            if job.wait is not None and job.wait.match is not None and job.wait.hook is None
        ]
        if not waiting:
            return view
        signer = await self._lookup()
        if signer is None:
            return view
        jobs = dict(view.jobs)
        for name in waiting:
            job = jobs[name]
            assert job.wait is not None
            path = signer.path(Hook(state.workflow_id, name, state.job(name).attempt))
            wait = job.wait.model_copy(update={"hook": path})
            jobs[name] = job.model_copy(update={"wait": wait})
        return view.model_copy(update={"jobs": jobs})

    async def _lookup(self) -> HookSigner | None:
        if self._signer is not None:
            return self._signer
        secret = os.environ.get(SECRET_ENV)
        if secret:
            self._signer = HookSigner(secret.encode())
            return self._signer
        if time.monotonic() - self._missed_at < _RETRY_AFTER:
            return None
        try:
            self._signer = await asyncio.wait_for(self._read_secret(), _LOOKUP_TIMEOUT)
        except (nats.errors.Error, TimeoutError):
            self._signer = None  # no bucket, no key, or not allowed to read it
        if self._signer is None:
            self._missed_at = time.monotonic()
        return self._signer

    async def _read_secret(self) -> HookSigner | None:
        kv = await self._nc.jetstream().key_value(subjects.KV_GATEWAY)
        entry = await kv.get(GATEWAY_SECRET_KEY)
        return HookSigner(bytes(entry.value)) if entry.value else None
