"""The default executor: ``sh -c <run>`` in its own process group, streamed line by line.

What the command sees:

- environment: the worker's own environment (or, with ``env_clear``, only ``BASIC_ENV`` and the
  names ``env_allow`` lists: ``NAME`` or a prefix ``NAME_*``), then the job's ``env`` (the
  workflow's and the job's ``env:``), then jetwork's own, which cannot be overridden:
  ``JETWORK_WORKFLOW_ID``, ``JETWORK_JOB``, ``JETWORK_ATTEMPT``, ``JETWORK_WORKER_ID``,
  ``JETWORK_OUTPUT`` (a file for outputs), ``JETWORK_UPSTREAM_OUTPUTS`` (JSON
  ``{job: {key: value}}``, left out above 100 KiB, where the argument limit of ``exec`` looms) and
  ``JETWORK_UPSTREAM_OUTPUTS_FILE`` (the same JSON, always);
- stdin is ``/dev/null``; stdout and stderr become log lines, one sequence across both in the
  order the command wrote them, with backpressure: while the job's log backlog is full the pipes
  are not read and the command blocks on its next write (``pipes.py``).

Outputs: a stdout line ``::set-output key=value`` (or GitHub's ``::set-output name=key::value``)
sets an output and is kept out of the log; so do ``key=value`` lines and
``key<<DELIM … DELIM`` blocks (multi-line values) appended to ``$JETWORK_OUTPUT``, which win over
stdout. Outputs over ``max_output_bytes`` fail the job without retry.

Stopping: on cancel, timeout or lost lease the whole process group gets SIGTERM, then SIGKILL
after ``kill_grace`` seconds. When the command exits, leftover background processes of its group
are stopped the same way. A process that leaves the group (``setsid``) escapes this.

Hearing back: besides asyncio's report of the exit, a probe looks at the process every second
(``ExitProbe``); an exit not reported within two seconds is logged as an error and taken from the
kernel, so a lost report never leaves a finished job running.

What the command starts from is ``environment.py``; outputs are kept and parsed by ``outputs.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import orjson

from events.catalog import JobSpec
from events.subjects import is_valid_token
from sdk.worker.config import KIB, WorkerConfig
from sdk.worker.executors.base import (
    ExecutionResult,
    Failed,
    Interrupt,
    Succeeded,
    clip_error,
    supervise,
    too_large,
)
from sdk.worker.executors.environment import BASIC_ENV, job_environment
from sdk.worker.executors.outputs import Outputs, parse_output_file
from sdk.worker.executors.pipes import LineSplitter, OutputPipes
from sdk.worker.executors.process_group import (
    LIVE_GROUPS,
    ExitProbe,
    signal_group,
    stop_process_group,
)
from sdk.worker.job_context import JobContext
from sdk.worker.log_buffer import LogStream

__all__ = ["BASIC_ENV", "LineSplitter", "ShellExecutor", "job_environment", "parse_output_file"]

MAX_UPSTREAM_ENV_BYTES: Final = 100 * KIB
PIPES_IDLE: Final = 1.0
"""Seconds of silence after which output still held open by a process that left the job's
process group (``setsid``) is no longer waited for."""
PIPES_LIMIT: Final = 3.0
PIPES_LAST_BYTES: Final = 256 * KIB
"""Seconds and bytes of such output read at most once the job's process group is gone."""
STDERR_TAIL_LINES: Final = 20
_TAIL_LINE_CHARS: Final = 512
_SET_OUTPUT: Final = "::set-output "


class ShellExecutor:
    """Runs ``spec.run`` with ``sh -c`` (see the module docstring for the full contract)."""

    def __init__(
        self,
        *,
        shell: Sequence[str] = ("sh", "-c"),
        cwd: str | os.PathLike[str] | None = None,
        env_clear: bool = False,
        env_allow: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
        kill_grace: float = 5.0,
        max_output_bytes: int = 64 * KIB,
        max_log_line_bytes: int = 16 * KIB,
    ) -> None:
        self._shell = tuple(shell)
        self._cwd = cwd
        self.env_clear = env_clear
        self.env_allow = tuple(env_allow)
        self._environ = environ
        self.kill_grace = kill_grace
        self.max_output_bytes = max_output_bytes
        self.max_log_line_bytes = max_log_line_bytes

    @classmethod
    def from_config(cls, config: WorkerConfig, **options: object) -> ShellExecutor:
        """An executor with the worker's limits; ``options`` are passed to the constructor."""
        kwargs: dict[str, object] = {
            "kill_grace": config.kill_grace,
            "max_output_bytes": config.max_output_bytes,
            "max_log_line_bytes": config.max_log_line_bytes,
            "env_clear": config.env_clear,
            "env_allow": config.env_allow,
            **options,
        }
        return cls(**kwargs)  # type: ignore[arg-type]

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult:
        if not spec.run:
            return Failed("the job has no `run` command for the shell executor", retryable=False)
        if ctx.lease_lost.is_set():
            return Interrupt.LEASE_LOST.result(ctx, spec.timeout)
        if ctx.cancelled.is_set():
            return Interrupt.CANCELLED.result(ctx, spec.timeout)
        with tempfile.TemporaryDirectory(prefix="jetwork-job-") as workdir:
            return await _ShellRun(self, spec, ctx, Path(workdir)).run()

    def environment(self, spec: JobSpec, ctx: JobContext, workdir: Path) -> dict[str, str]:
        """The environment ``spec.run`` gets (writes the upstream outputs file in ``workdir``)."""
        source = os.environ if self._environ is None else self._environ
        env = job_environment(source, clear=self.env_clear, allow=self.env_allow)
        env.update(spec.env)
        upstream = orjson.dumps(spec.upstream_outputs or dict(ctx.upstream_outputs))
        upstream_file = workdir / "upstream_outputs.json"
        upstream_file.write_bytes(upstream)
        output_file = workdir / "output"
        output_file.touch()
        env.update(
            JETWORK_WORKFLOW_ID=ctx.workflow_id,
            JETWORK_JOB=ctx.job,
            JETWORK_ATTEMPT=str(ctx.attempt),
            JETWORK_WORKER_ID=ctx.worker_id,
            JETWORK_OUTPUT=str(output_file),
            JETWORK_UPSTREAM_OUTPUTS_FILE=str(upstream_file),
        )
        if len(upstream) <= MAX_UPSTREAM_ENV_BYTES:
            env["JETWORK_UPSTREAM_OUTPUTS"] = upstream.decode()
        else:
            env.pop("JETWORK_UPSTREAM_OUTPUTS", None)
            ctx.emit(
                "system",
                f"[jetwork] upstream outputs are {len(upstream)} bytes: "
                "read them from $JETWORK_UPSTREAM_OUTPUTS_FILE ($JETWORK_UPSTREAM_OUTPUTS unset)",
            )
        return env


class _ShellRun:
    """One attempt: spawn, stream output, supervise, stop the group, judge the exit."""

    def __init__(self, ex: ShellExecutor, spec: JobSpec, ctx: JobContext, workdir: Path) -> None:
        self._ex = ex
        self._spec = spec
        self._ctx = ctx
        self._workdir = workdir
        self._outputs = Outputs(ex.max_output_bytes)
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._pipes: OutputPipes

    async def run(self) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        stdout_cap = max(self._ex.max_log_line_bytes, self._ex.max_output_bytes + 256)
        try:
            env = self._ex.environment(self._spec, self._ctx, self._workdir)
        except ValueError as exc:
            return Failed(f"cannot start the command: {exc}", retryable=False)
        pipes = self._pipes = OutputPipes(
            self._line, stdout_line_bytes=stdout_cap, stderr_line_bytes=self._ex.max_log_line_bytes
        )
        try:
            out, err = pipes.child_fds
            transport, protocol = await loop.subprocess_exec(
                _ExitProtocol,
                *self._ex._shell,
                self._spec.run or "",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=self._ex._cwd,
                start_new_session=True,
            )
        except ValueError as exc:  # e.g. a NUL byte in env or command: it will never start
            pipes.close()
            return Failed(f"cannot start the command: {exc}", retryable=False)
        except OSError as exc:
            pipes.close()
            return Failed(f"cannot start {self._ex._shell[0]!r}: {exc}", retryable=True)
        except BaseException:
            pipes.close()
            raise
        pipes.start()
        pgid = transport.get_pid()
        LIVE_GROUPS.add(pgid)
        probe = ExitProbe(pgid, protocol.exited, job=self._ctx.job)
        stopped = False
        try:
            interrupt = await supervise(
                asyncio.shield(protocol.exited), self._ctx, timeout=self._spec.timeout
            )
            # Also after a normal exit: background processes it left behind die with the job.
            await stop_process_group(pgid, protocol.exited, grace=self._ex.kill_grace)
            stopped = True
            await pipes.drain(idle=PIPES_IDLE, limit=PIPES_LIMIT, max_bytes=PIPES_LAST_BYTES)
        finally:
            if not stopped:  # we are being cancelled ourselves: no time for a grace period
                signal_group(pgid, signal.SIGKILL)
            LIVE_GROUPS.discard(pgid)
            probe.stop()
            pipes.close()
            transport.close()
        self._ctx.mark_ended()
        if interrupt is not None:
            return interrupt.result(self._ctx, self._spec.timeout)
        returncode = transport.get_returncode()
        if returncode is None:
            returncode = probe.returncode
        if returncode is None:
            return Failed("the command exited, but its exit status was lost", retryable=True)
        return self._judge(returncode)

    def _judge(self, returncode: int) -> ExecutionResult:
        if returncode != 0:
            if returncode < 0:
                reason = f"killed by signal {_signal_name(-returncode)}"
            else:
                reason = f"exit code {returncode}"
            tail = "\n".join(self._stderr_tail)
            return Failed(clip_error(f"{reason}\n{tail}" if tail else reason), retryable=True)
        problem = self._read_output_file()
        if problem is not None:
            return problem
        if self._outputs.overflow:
            return too_large("outputs", self._outputs.attempted, self._ex.max_output_bytes)
        return Succeeded(outputs=dict(self._outputs.values))

    def _line(self, stream: LogStream, raw: bytes, dropped: int) -> None:
        text = raw.decode("utf-8", "replace").removesuffix("\r")
        if stream == "stdout" and text.startswith(_SET_OUTPUT):
            self._set_output_command(text[len(_SET_OUTPUT) :], dropped)
            return
        if stream == "stderr":
            self._stderr_tail.append(text[:_TAIL_LINE_CHARS])
        sink = self._ctx.log_sink  # on the event loop: no need for ctx.emit's thread hop
        sink.write(stream, text, dropped_bytes=dropped)
        if sink.full and not self._pipes.paused:
            # Backpressure: the command blocks on its next write until the backlog is published.
            self._pipes.pause()
            sink.when_room(self._pipes.resume)

    def _set_output_command(self, rest: str, dropped: int) -> None:
        if rest.startswith("name=") and "::" in rest:
            key, _, value = rest[len("name=") :].partition("::")
        else:
            key, _, value = rest.partition("=")
        key = key.strip()
        if not is_valid_token(key):
            self._ctx.emit(
                "system",
                f"[jetwork] ignored ::set-output with invalid name {key[:64]!r}: "
                "use `::set-output key=value` with 1-128 letters, digits, '_' or '-' as key",
            )
            return
        self._outputs.set(key, value, extra_bytes=dropped)

    def _read_output_file(self) -> Failed | None:
        path = self._workdir / "output"
        limit = self._ex.max_output_bytes
        try:
            size = path.stat().st_size
            if size > limit:
                return too_large("outputs written to $JETWORK_OUTPUT", size, limit)
            text = path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return Failed(f"cannot read $JETWORK_OUTPUT: {exc}", retryable=True)
        try:
            pairs = parse_output_file(text)
        except ValueError as exc:
            return Failed(f"invalid $JETWORK_OUTPUT file: {exc}", retryable=False)
        for key, value in pairs:
            self._outputs.set(key, value)
        return None


class _ExitProtocol(asyncio.SubprocessProtocol):
    """Only the exit: the output goes through ``OutputPipes``.

    ``Process.wait()`` is not used: before Python 3.12 it also waits for every pipe to close,
    which a leftover background process can postpone forever.
    """

    def __init__(self) -> None:
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.process_exited()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
