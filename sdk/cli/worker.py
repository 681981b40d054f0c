"""``jetwork worker``: a standalone worker that runs shell jobs, configured by flags or env vars."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click
import structlog

from events.errors import JetworkError, ServerRefused, ServerUnavailable
from events.namespaces import current_namespace
from sdk.cli._common import make_console, nats_auth_options
from sdk.cli._metrics import metrics_option, serving_metrics
from sdk.runtime import run_service
from sdk.worker import Worker
from sdk.worker.config import InvalidWorkerConfig, WorkerConfig, parse_duration
from sdk.worker.signals import HardExit, listen_for_shutdown
from telemetry import tracing

EXIT_ABORTED = 3
HARD_EXIT_MARGIN = 0.9
"""Seconds after the kill grace at which an aborting worker process ends, stopped or not."""


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from None


@click.command("worker")
@click.option(
    "--labels",
    metavar="A,B",
    help="Comma-separated labels; a job runs here only if all its labels are among them. "
    "[env: JETWORK_WORKER_LABELS]",
)
@click.option(
    "--concurrency",
    "-c",
    type=int,
    metavar="N",
    help="Jobs run at once (default 1). [env: JETWORK_WORKER_CONCURRENCY]",
)
@click.option(
    "--nats",
    "nats_url",
    metavar="URL",
    help="NATS server(s), comma-separated (default nats://127.0.0.1:4222). [env: JETWORK_NATS_URL]",
)
@click.option(
    "--lease-ttl",
    metavar="DURATION",
    callback=_duration,
    help="Lease of a running job: without heartbeats for this long it goes to another worker "
    "(default 30s). [env: JETWORK_WORKER_LEASE_TTL]",
)
@click.option(
    "--heartbeat",
    metavar="DURATION",
    callback=_duration,
    help="Heartbeat interval, less than the lease (default 10s). "
    "[env: JETWORK_WORKER_HEARTBEAT_INTERVAL]",
)
@click.option(
    "--poll-interval",
    metavar="DURATION",
    callback=_duration,
    help="How long an idle worker waits for work per poll (default 2s). "
    "[env: JETWORK_WORKER_POLL_INTERVAL]",
)
@click.option(
    "--id",
    "worker_id",
    metavar="ID",
    help="Worker id (default: generated). [env: JETWORK_WORKER_ID]",
)
@click.option(
    "--env-clear",
    is_flag=True,
    default=None,
    help="Start jobs from a clean environment (PATH, HOME, locale … and --env-allow) instead of "
    "this worker's. [env: JETWORK_WORKER_ENV_CLEAR]",
)
@click.option(
    "--env-allow",
    metavar="NAME,...",
    help="With --env-clear: the variables jobs keep; NAME or a prefix NAME_*. "
    "[env: JETWORK_WORKER_ENV_ALLOW]",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="One line per event, as text or JSON.",
)
@metrics_option
@nats_auth_options
def worker(
    labels: str | None,
    concurrency: int | None,
    nats_url: str | None,
    lease_ttl: float | None,
    heartbeat: float | None,
    poll_interval: float | None,
    worker_id: str | None,
    env_clear: bool | None,
    env_allow: str | None,
    log_format: str,
    metrics_listen: str | None,
) -> None:
    """Run shell jobs (`run:`) whose labels this worker has.

    Jobs see this worker's environment, then the workflow's and the job's `env:`, then
    jetwork's JETWORK_* job variables (--env-clear starts from a clean one). Flags override the
    JETWORK_* environment variables. The first SIGTERM/SIGINT stops claiming, lets running jobs
    finish and report, and exits 0; a second one stops them (SIGTERM, SIGKILL after the kill
    grace; another worker re-runs them) and exits 3 within the kill grace plus a second. A bad
    setting or an unreachable server prints `error: <what and why>` on stderr and exits 1.
    Every other setting has a JETWORK_WORKER_* variable: see the README's "Workers" section.

    \b
    Examples:
      jetwork worker --labels linux,docker --concurrency 4
      jetwork worker --nats nats://10.0.0.5:4222 --lease-ttl 60s --heartbeat 20s
      JETWORK_WORKER_LABELS=gpu JETWORK_WORKER_CONCURRENCY=2 jetwork worker
      jetwork worker --env-clear --env-allow 'AWS_*,DOCKER_HOST'
      jetwork worker --metrics 127.0.0.1:9103   # Prometheus metrics
    """
    overrides: dict[str, Any] = {
        "labels": labels,
        "max_concurrent_jobs": concurrency,
        "nats_url": nats_url,
        "lease_ttl": lease_ttl,
        "heartbeat_interval": heartbeat,
        "poll_interval": poll_interval,
        "worker_id": worker_id,
        "env_clear": env_clear,
        "env_allow": env_allow,
        "namespace": current_namespace(),  # --namespace (else JETWORK_NAMESPACE, via from_env)
    }
    try:
        config = WorkerConfig.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except InvalidWorkerConfig as exc:
        raise JetworkError("invalid worker configuration: " + "; ".join(exc.problems)) from None
    configure_logging(log_format)
    try:
        with serving_metrics(metrics_listen, make_console(stderr=True)):
            aborted = _run(Worker(config))
    except ServerRefused:
        raise
    except ServerUnavailable:
        # The worker never starts a server itself: say so rather than the generic advice.
        raise JetworkError(
            f"cannot reach the NATS server at {config.nats_url}: is it running? "
            "Pass --nats URL or set JETWORK_NATS_URL."
        ) from None
    except JetworkError as exc:
        raise JetworkError(str(exc).splitlines()[0]) from None
    if aborted:
        sys.exit(EXIT_ABORTED)


def _run(worker: Worker) -> bool:
    return run_service(_serve(worker))


async def _serve(worker: Worker) -> bool:
    """Run ``worker``; once it aborted, leave at once (exit 3), whatever still runs.

    A second signal arms a last resort: if the worker has not stopped by the largest kill
    grace plus ``HARD_EXIT_MARGIN`` (a bug, a stuck thread), the process ends anyway.
    """
    hard_exit = HardExit(EXIT_ABORTED)
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals == 2:
            hard_exit.arm(worker.max_kill_grace + HARD_EXIT_MARGIN)

    stop_listening = listen_for_shutdown(on_signal)
    try:
        await worker.run()
    finally:
        stop_listening()
    if worker.aborted:
        # asyncio.run's cleanup would wait for the threads of sync handlers that never return.
        hard_exit.now()
    return worker.aborted


def configure_logging(log_format: str) -> None:
    """structlog to stderr, one line per event."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            tracing.add_trace_id,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
