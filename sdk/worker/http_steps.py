"""The worker inside ``jetwork server`` that runs ``http:`` steps (``HttpExecutor``).

It serves one label set, ``@jetwork-http`` (never the jobs without labels, which every other
worker's capabilities cover), in every namespace (``events/namespaces.py``), so the request is
made by jetwork itself while the engine goes on
deciding: the step is a job like any other, leased, heartbeated, timed out, retried, cancelled.
Settings: ``JETWORK_HTTP_STEP_CONCURRENCY`` (requests at once, default 16) and
``JETWORK_HTTP_STEP_ALLOW`` (``sdk.worker.executors.http_step``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from events.connection import NatsSettings
from events.http_step import HTTP_HANDLER
from events.labels import HANDLER_PREFIX
from events.namespaces import MEMBER_PREFIX
from events.nats_auth import NatsAuth
from sdk.worker.config import WorkerConfig
from sdk.worker.core import Worker
from sdk.worker.executors.http_step import HttpExecutor
from sdk.worker.handlers import HandlerRegistry
from sdk.worker.job_context import JobContext

CONCURRENCY_ENV: Final = "JETWORK_HTTP_STEP_CONCURRENCY"
DEFAULT_CONCURRENCY: Final = 16
_REQUIREMENTS: Final = frozenset({HANDLER_PREFIX + HTTP_HANDLER})


async def _made_by_the_executor(ctx: JobContext) -> None:  # pragma: no cover - never called
    raise RuntimeError("http steps are run by HttpExecutor")


class HttpStepWorker(Worker):
    """A worker offering only the reserved handler ``jetwork-http``."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        executor: HttpExecutor,
        auth: NatsAuth | None = None,
        **options: Any,
    ) -> None:
        super().__init__(config, executor=executor, **options)
        self.http = executor
        self._auth = auth

    def _nats_settings(self) -> NatsSettings:
        # ``jetwork server --auth``: the server's worker role, not the process's variables.
        return replace(super()._nats_settings(), auth=self._auth)

    def serves(self, requirements: frozenset[str]) -> bool:
        # Every namespace's http steps (``ns:<name>`` beside ``@jetwork-http``): jetwork itself
        # makes the request, for whichever namespace the step runs in.
        return {r for r in requirements if not r.startswith(MEMBER_PREFIX)} == _REQUIREMENTS

    async def stop(self, *, graceful: bool = True) -> None:
        try:
            await super().stop(graceful=graceful)
        finally:
            await self.http.aclose()


def http_step_worker(
    nats_url: str,
    environ: Mapping[str, str] | None = None,
    *,
    auth: NatsAuth | None = None,
    **settings: Any,
) -> HttpStepWorker:
    """The built-in worker of ``jetwork server``, connected to ``nats_url``; ``settings``
    override its ``WorkerConfig`` (tests shorten its lease)."""
    environ = environ if environ is not None else os.environ
    raw = environ.get(CONCURRENCY_ENV, "").strip()
    if raw and (not raw.isdigit() or int(raw) < 1):
        raise ValueError(f"{CONCURRENCY_ENV}={raw!r}: expected a whole number >= 1")
    config = WorkerConfig(
        nats_url=nats_url,
        worker_id=f"http-steps-{uuid.uuid4().hex[:8]}",
        max_concurrent_jobs=int(raw) if raw else DEFAULT_CONCURRENCY,
        **settings,
    )
    registry = HandlerRegistry()
    registry.register(HTTP_HANDLER, _made_by_the_executor)
    executor = HttpExecutor(environ=environ, max_output_bytes=config.max_output_bytes)
    return HttpStepWorker(config, registry=registry, executor=executor, environ=environ, auth=auth)
