"""The built-in executor of ``http:`` steps: jetwork makes the request itself.

``jetwork server`` runs it in a worker of its own (``sdk.worker.http_steps``) that serves only the
label set ``@jetwork-http``, so an http step is leased, timed out, retried and cancelled as any job.

- Only http and https; with ``JETWORK_HTTP_STEP_ALLOW`` set (hosts, comma-separated;
  ``*.example.com`` for subdomains) any other host fails the job without retry, saying why.
- ``${{ secrets.NAME }}`` in a header value is read from this process's environment (jetwork's own
  NATS credentials excepted). Header values are never logged nor recorded: the job's log shows
  the method, the URL and the status of each request.
- The response's status must be in ``expect_status`` (default: any 2xx), else the attempt fails
  (retryably: the job's ``retry`` decides). Outputs: ``status`` and ``body`` (text).
- ``poll``: the request is repeated every ``interval`` until ``until`` holds for ``response``
  (``status``, ``body``, ``headers``), at most ``max_polls`` times. Between two polls the job is
  parked as a handler's ``InProgress`` parks it (``actors.parking``): no worker slot, no lease,
  a durable timer of the engine queues it again, and the next run makes the next request
  (``ctx.poll_count`` says how many were made). An interval under ``PARK_AT_LEAST`` is waited in
  the slot: the round trip through the log (four events and a timer) costs about what it saves.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson

from actors.definitions.http_step import poll_done, url_problem
from events.catalog import JobSpec
from events.errors import JetworkError
from events.http_step import SECRET_REF, HttpStep
from events.nats_auth import ENV as NATS_AUTH_ENV
from sdk.worker.config import KIB
from sdk.worker.executors.base import (
    ExecutionResult,
    Failed,
    Parked,
    Succeeded,
    clip_error,
    outputs_size,
    settle,
    supervise,
    too_large,
)
from sdk.worker.job_context import JobContext

ALLOW_ENV: Final = "JETWORK_HTTP_STEP_ALLOW"
_HIDDEN: Final = frozenset(NATS_AUTH_ENV.values())
_BODY_EXCERPT: Final = 300
PARK_AT_LEAST: Final = 1.0
"""Seconds between polls from which the job is parked between them rather than waiting."""


class StepRefused(JetworkError):
    """The step may not run here (scheme, host, missing secret): final, never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def allowed_hosts(environ: Mapping[str, str]) -> tuple[str, ...] | None:
    """The allow-list from ``JETWORK_HTTP_STEP_ALLOW``; None when unset or empty (all hosts)."""
    raw = environ.get(ALLOW_ENV, "")
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    return hosts or None


def host_allowed(host: str, allow: tuple[str, ...] | None) -> bool:
    if allow is None:
        return True
    host = host.lower()
    return any(
        host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in allow
    )


def resolve_headers(headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Header values with ``${{ secrets.NAME }}`` replaced; raises ``StepRefused``."""

    def secret(match: Any) -> str:
        name = match.group(1)
        if name in _HIDDEN or name not in environ:
            raise StepRefused(
                f"secret {name} is not set in the environment of jetwork server "
                "(where http steps run)"
            )
        return environ[name]

    return {name: SECRET_REF.sub(secret, value) for name, value in headers.items()}


class HttpExecutor:
    """Makes the request of ``spec.http``; see the module docstring."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        max_output_bytes: int = 64 * KIB,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._environ = environ if environ is not None else os.environ
        self._allow = allowed_hosts(self._environ)
        self.max_output_bytes = max_output_bytes
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # One client for every step: its TLS context costs ~100 ms to build, and it pools
        # connections. Timeouts are given per request.
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        """Close the connections kept for later steps (the worker's shutdown)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult:
        step = spec.http
        if step is None:
            return Failed("the job has no http step", retryable=False)
        try:
            self._check_url(step.url)
            headers = resolve_headers(step.headers, self._environ)
        except StepRefused as refused:
            ctx.emit("stderr", str(refused))
            return Failed(str(refused), retryable=False)
        work = asyncio.ensure_future(self._run(step, headers, ctx))
        work.add_done_callback(lambda _: ctx.mark_ended())
        interrupt = await supervise(work, ctx, timeout=spec.timeout)
        if interrupt is not None:
            await settle(work, grace=1.0)
            return interrupt.result(ctx, spec.timeout)
        return work.result()

    def _check_url(self, url: str) -> None:
        problem = url_problem(url)
        if problem is not None:
            raise StepRefused(problem)
        host = urlsplit(url).hostname or ""
        if not host_allowed(host, self._allow):
            raise StepRefused(
                f"host {host} is not allowed for http steps: {ALLOW_ENV} on jetwork server "
                f"allows {', '.join(self._allow or ())}"
            )

    async def _run(
        self, step: HttpStep, headers: dict[str, str], ctx: JobContext
    ) -> ExecutionResult:
        polls = step.poll.max_polls if step.poll is not None else 1
        # Polls made by earlier runs of this attempt, each parked after its request.
        for number in range(ctx.poll_count + 1, polls + 1):
            response = await self._request(step, headers, ctx)
            if isinstance(response, Failed):
                return response
            if not step.expects(response.status_code):
                return _unexpected(step, response)
            outputs = {"status": str(response.status_code), "body": response.text}
            if step.poll is None:
                return self._succeeded(outputs)
            done = _poll_done(step, response)
            if isinstance(done, Failed):
                return done
            if done:
                return self._succeeded({**outputs, "polls": str(number)})
            if number < polls and step.poll.interval >= PARK_AT_LEAST:
                progress = {"status": outputs["status"], "polls": str(number)}
                return Parked(after=step.poll.interval, outputs=progress)
            if number < polls:
                await asyncio.sleep(step.poll.interval)
        until = step.poll.until if step.poll is not None else ""
        return Failed(f"polled {polls} times and {until!r} never held (max_polls)", retryable=True)

    async def _request(
        self, step: HttpStep, headers: dict[str, str], ctx: JobContext
    ) -> httpx.Response | Failed:
        content, json_body = _body(step.body)
        started = time.monotonic()
        try:
            response = await self._http().request(
                step.method,
                step.url,
                headers=headers,
                content=content,
                json=json_body,
                timeout=step.timeout,
            )
        except httpx.HTTPError as exc:
            error = f"{step.method} {step.url} failed: {type(exc).__name__}: {exc}"
            ctx.emit("stderr", error)
            return Failed(clip_error(error), retryable=True)
        took = (time.monotonic() - started) * 1000
        ctx.emit("stdout", f"{step.method} {step.url} -> {response.status_code} ({took:.0f} ms)")
        return response

    def _succeeded(self, outputs: dict[str, str]) -> ExecutionResult:
        size = outputs_size(outputs)
        if size > self.max_output_bytes:
            return too_large("the response's outputs", size, self.max_output_bytes)
        return Succeeded(outputs=outputs)


def _body(body: Any) -> tuple[bytes | None, Any]:
    """(raw content, JSON value): text goes as is, any other value as JSON."""
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode(), None
    return None, orjson.loads(orjson.dumps(body))


def _unexpected(step: HttpStep, response: httpx.Response) -> Failed:
    wanted = ", ".join(map(str, step.expect_status)) if step.expect_status else "2xx"
    excerpt = response.text[:_BODY_EXCERPT]
    more = "…" if len(response.text) > _BODY_EXCERPT else ""
    return Failed(
        f"{step.method} {step.url} answered {response.status_code}, expected {wanted}: "
        f"{excerpt}{more}",
        retryable=True,
    )


def _poll_done(step: HttpStep, response: httpx.Response) -> bool | Failed:
    assert step.poll is not None
    view = {
        "status": response.status_code,
        "body": response.text,
        "headers": {k.lower(): v for k, v in response.headers.items()},
    }
    try:
        return poll_done(step.poll.until, view)
    except ValueError as exc:  # ExpressionError: fromJSON of a body that is not JSON, …
        return Failed(f"poll.until: {exc}", retryable=False)
