"""What every ``jetwork`` command shares: the ``--nats`` option, the error handler, JSON output.

Errors: every command raises ``JetworkError`` for anything the user can fix (unknown id, invalid
file, unreachable server, bad option value); ``JetworkGroup`` prints it on stderr as
``error: <message>`` and exits 1, without a traceback. Usage errors stay click's (exit 2).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import replace
from typing import Any, Final, TypeVar

import click
import orjson
import structlog
from rich.console import Console

from events.errors import JetworkError
from events.namespaces import ENV as NAMESPACE_ENV
from events.namespaces import InvalidNamespace, set_process_namespace
from events.nats_auth import ENV as AUTH_ENV
from events.nats_auth import NatsAuth, current_process_auth, set_process_auth
from sdk.client import Client
from telemetry import tracing

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

NATS_HELP = "NATS server URL; overrides JETWORK_NATS_URL (default nats://127.0.0.1:4222)."


class JetworkGroup(click.Group):
    """A click group whose commands report ``JetworkError`` as one clear line, not a traceback."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        set_process_auth(NatsAuth())  # what this command's options say, nothing left before
        set_process_namespace(None)
        return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except JetworkError as exc:
            report_error(exc)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        finally:
            set_process_auth(NatsAuth())  # main() called in-process (tests) leaves none behind
            set_process_namespace(None)


def report_error(exc: JetworkError) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + str(exc), err=True)


def nats_option(function: F) -> F:
    """``--nats URL`` for a command: the server to talk to (``None``: environment or default),
    and how to authenticate to it (``nats_auth_options``)."""
    decorated: F = click.option("--nats", "nats_url", metavar="URL", default=None, help=NATS_HELP)(
        nats_auth_options(function)
    )
    return decorated


_AUTH_OPTIONS: Final = (
    ("--nats-creds", "creds", "FILE", "a NATS .creds file (user JWT and nkey seed)"),
    ("--nats-nkey", "nkey", "FILE", "a file holding a user nkey seed"),
    ("--nats-user", "user", "NAME", "NATS user (with --nats-password)"),
    ("--nats-password", "password", "SECRET", "NATS password"),
    ("--nats-token", "token", "SECRET", "NATS token"),
    ("--tls-ca", "tls_ca", "FILE", "CA certificate that signed the NATS server's"),
    ("--tls-cert", "tls_cert", "FILE", "client certificate for mutual TLS (with --tls-key)"),
    ("--tls-key", "tls_key", "FILE", "the client certificate's private key"),
    (
        "--nats-inbox",
        "inbox",
        "PREFIX",
        "the prefix of reply inboxes (a role's own, e.g. _INBOX_worker)",
    ),
)


def nats_auth_options(function: F) -> F:
    """``--nats-creds``, ``--nats-nkey``, ``--nats-user``/``--nats-password``, ``--nats-token``,
    ``--tls-ca``, ``--tls-cert``/``--tls-key``: this process's NATS identity (over the
    ``JETWORK_NATS_*`` variables; ``events/nats_auth.py``)."""

    def remember(field: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
        def callback(_: click.Context, __: click.Parameter, value: str | None) -> None:
            if value:
                set_process_auth(replace(current_process_auth(), **{field: value}))

        return callback

    for flag, field, metavar, help_text in reversed(_AUTH_OPTIONS):
        function = click.option(
            flag, metavar=metavar, expose_value=False, callback=remember(field),
            help=f"{help_text} [env: {AUTH_ENV[field]}]",
        )(function)  # fmt: skip
    return namespace_option(function)


def namespace_option(function: F) -> F:
    """``--namespace NAME`` (over ``JETWORK_NAMESPACE``, else ``default``): the namespace every
    client and worker of this command works in (``events/namespaces.py``). Checked at once, so
    a bad name is refused before anything connects."""

    def remember(_: click.Context, __: click.Parameter, value: str | None) -> None:
        if value:
            try:
                set_process_namespace(value)
            except InvalidNamespace as exc:
                raise click.BadParameter(str(exc)) from None

    decorated: F = click.option(
        "--namespace",
        metavar="NAME",
        expose_value=False,
        callback=remember,
        help=f"the namespace to work in (default: default) [env: {NAMESPACE_ENV}]",
    )(function)
    return decorated


def json_option(what: str) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        decorated: F = click.option(
            "--json", "as_json", is_flag=True, help=f"Print {what} as JSON."
        )(function)
        return decorated

    return decorate


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine on a fresh event loop."""
    return asyncio.run(coroutine)


def with_client(nats_url: str | None, action: Callable[[Client], Awaitable[T]]) -> T:
    """Connect (``--nats``, else ``JETWORK_NATS_URL``, else the default), act, disconnect."""

    async def main() -> T:
        async with Client.connect(nats_url, name="jetwork-cli") as client:
            return await action(client)

    configure_logging()
    return run(main())


def make_console(*, stderr: bool = False) -> Console:
    """A rich console; 120 columns when not on a terminal (logs, pipes), so tables stay legible."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 120)


def print_json(data: Any) -> None:
    """Indented JSON on stdout (datetimes as RFC 3339, as the views serialise them)."""
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def log_format_option(function: F) -> F:
    """``--log-format console|json`` (``JETWORK_LOG_FORMAT``) for the long-running commands."""
    decorated: F = click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        envvar="JETWORK_LOG_FORMAT",
        default="console",
        show_default=True,
        help="Log lines as text or JSON objects (with workflow, job and trace ids where they "
        "apply). [env: JETWORK_LOG_FORMAT]",
    )(function)
    return decorated


def configure_logging(level: int = logging.WARNING, *, json: bool = False) -> None:
    """Structured logs go to stderr, so that stdout carries only what a command prints.

    The level is filtered by a processor (not the wrapper class), so that tests capturing logs
    with ``structlog.testing.capture_logs`` still see everything. ``json``: one JSON object per
    line, with ISO timestamps and the run's ``trace_id`` where a workflow is named.
    """

    def drop_below_level(_: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if _LEVELS.get(method, logging.INFO) < level:
            raise structlog.DropEvent
        return event

    structlog.configure(
        processors=[
            drop_below_level,
            structlog.processors.add_log_level,
            *(_JSON if json else _CONSOLE),
        ],
        logger_factory=lambda *_: _StderrLogger(),
        cache_logger_on_first_use=False,
    )


_JSON: Final = (
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    tracing.add_trace_id,
    structlog.processors.JSONRenderer(),
)
_CONSOLE: Final = (
    structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
    structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
)

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class _StderrLogger:
    """Writes to ``sys.stderr`` as it is at each call (click's test runner swaps it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warn = warning = error = exception = critical = fatal = log = msg
