"""The projector of ``jetwork server``, in a process of its own (``jetwork projector``).

Why not in the server's process: there it shared one core (one interpreter lock) with the engine,
and could not yield to it. Its own process runs on another core when there is one, at a lower CPU
priority (``projections.yielding``): the execution path goes first, views catch up after a burst.

The server supervises it: started before the server says it is ready (a start that fails is
tried again for up to ``READY_TIMEOUT``: NATS may be restarting), started again when it
exits on its own (after ``RESTART_AFTER``, doubling up to ``RESTART_AFTER_MAX``), stopped with
the server. Its stdin is a pipe from the server: if the server dies without stopping it (SIGKILL),
the pipe closes and the projector stops itself, so none is left orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping
from typing import Final

import structlog

from events.errors import JetworkError
from events.nats_auth import NatsAuth
from sdk.cli.projector import READY

READY_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 20.0
RESTART_AFTER: Final = 0.5
RESTART_AFTER_MAX: Final = 10.0
_log = structlog.get_logger("jetwork.server")


class ProjectorProcess:
    """Start, watch and stop one ``jetwork projector`` child connected to ``url``."""

    def __init__(
        self,
        url: str,
        *,
        auth: NatsAuth | None,
        log_format: str = "console",
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self._url = url
        self._auth = auth
        self._log_format = log_format
        self._ready_timeout = ready_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._drain: asyncio.Task[None] | None = None
        self._stopping = False
        self.starts = 0  # how many processes were started (1 + restarts)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Start the projector and wait until it projects. A start that fails is tried again
        (NATS may be restarting under the server: the child's first connection gives up fast)
        until ``ready_timeout`` has passed; then this raises, its log above."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ready_timeout
        delay = RESTART_AFTER
        while True:
            try:
                await self._spawn(timeout=max(1.0, deadline - loop.time()))
                break
            except JetworkError as exc:
                if loop.time() + delay >= deadline:
                    raise
                _log.warning("the projector process did not start: trying again",
                             error=str(exc), after_seconds=delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_AFTER_MAX)
        self._watch = asyncio.create_task(self._restart_when_it_exits(), name="jw-projector-proc")

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            process.stdin.close()  # it stops on its own when its stdin closes
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            _log.warning("the projector process did not stop in time: killed", pid=process.pid)
            process.kill()
            await process.wait()

    async def _spawn(self, *, timeout: float = READY_TIMEOUT) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sdk.cli", "projector", "--with-parent",
            "--log-format", self._log_format,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=child_environment(os.environ, self._url, self._auth),
            # Its own session: Ctrl-C in a terminal reaches the server alone, which stops it
            # in its turn (a child stopping first would look like a crash, and be restarted).
            start_new_session=True,
        )  # fmt: skip
        self._process = process
        self.starts += 1
        assert process.stdout is not None
        try:
            await asyncio.wait_for(_ready(process.stdout), timeout)
        except (TimeoutError, EOFError):
            if process.returncode is None:
                process.kill()
            code = await process.wait()
            raise JetworkError(
                f"the projector process did not start (exit code {code}; its log above)"
            ) from None
        # Drain what it may still print, so that a full pipe can never block it.
        self._drain = asyncio.create_task(_drain(process.stdout), name="jw-projector-stdout")

    async def _restart_when_it_exits(self) -> None:
        delay = RESTART_AFTER
        while not self._stopping:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            _log.warning("the projector process exited: starting another", exit_code=code,
                         after_seconds=delay)  # fmt: skip
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                delay = RESTART_AFTER
            except JetworkError as exc:
                _log.warning("the projector process did not start again", error=str(exc))
                delay = min(delay * 2, RESTART_AFTER_MAX)


def child_environment(
    environ: Mapping[str, str], url: str, auth: NatsAuth | None
) -> dict[str, str]:
    """The server's environment, with the NATS server to use and, when given, the identity to
    connect with (the server's options, or a role's with ``--auth``) in place of its variables."""
    env = dict(environ)
    env["JETWORK_NATS_URL"] = url
    if auth is not None:
        env.update(auth.environment())
    return env


async def _ready(stdout: asyncio.StreamReader) -> None:
    while True:
        line = await stdout.readline()
        if not line:
            raise EOFError("the projector process ended before it was ready")
        if line.decode(errors="replace").strip() == READY:
            return


async def _drain(stdout: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await stdout.read(65536):
            pass
