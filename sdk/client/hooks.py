"""The hook URLs of jobs waiting for a webhook, in the views ``status`` returns.

A hook token is signed with the gateway's secret (``events.hooks``): the client reads it where
the gateway does (``JETWORK_HTTP_LEASE_SECRET``, else KV ``jw_gateway``), never creating it. With
no gateway ever started (no secret yet), ``wait.hook`` stays None and ``status`` says so.
"""

from __future__ import annotations

import os

from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from actors.workflow import WorkflowState
from events import subjects
from events.hooks import GATEWAY_SECRET_KEY, SECRET_ENV, Hook, HookSigner
from projections.views import WorkflowView


async def hook_signer(nc: NATS) -> HookSigner | None:
    """The signer of the gateways on this NATS, or None when no gateway made a secret yet."""
    secret = os.environ.get(SECRET_ENV)
    if secret:
        return HookSigner(secret.encode())
    try:
        kv = await nc.jetstream().key_value(subjects.KV_GATEWAY)
        entry = await kv.get(GATEWAY_SECRET_KEY)
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    return HookSigner(bytes(entry.value)) if entry.value else None


async def with_hooks(nc: NATS, view: WorkflowView, state: WorkflowState) -> WorkflowView:
    """``view`` with the hook path of every job waiting for a webhook."""
    waiting = [
        name
        for name, job in view.jobs.items()
        if job.wait is not None and job.wait.match is not None and job.wait.hook is None
    ]
    if not waiting:
        return view
    signer = await hook_signer(nc)
    if signer is None:
        return view
    jobs = dict(view.jobs)
    for name in waiting:
        job = jobs[name]
        assert job.wait is not None
        path = signer.path(Hook(state.workflow_id, name, state.job(name).attempt))
        jobs[name] = job.model_copy(update={"wait": job.wait.model_copy(update={"hook": path})})
    return view.model_copy(update={"jobs": jobs})
