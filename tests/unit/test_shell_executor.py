from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog

from events.catalog import JobSpec
from sdk.worker.executors import Abandoned, Cancelled, Failed, ShellExecutor, Succeeded, shell
from sdk.worker.executors.process_group import EXIT_PROBE_EVERY, EXIT_REPORT_GRACE, ExitProbe
from sdk.worker.executors.shell import LineSplitter, parse_output_file
from sdk.worker.job_context import JobContext
from sdk.worker.log_buffer import LogBuffer, LogChunk
from tests.eventually import assert_eventually


class Collected:
    """A log publisher that records chunks; ``gate`` can hold it shut (a stuck publisher)."""

    def __init__(self) -> None:
        self.chunks: list[LogChunk] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, batch: Sequence[LogChunk]) -> None:
        await self.gate.wait()
        self.chunks.extend(batch)

    def lines(self, stream: str) -> list[str]:
        return [c.line for c in self.chunks if c.stream == stream]


@pytest.fixture
def logs() -> Collected:
    return Collected()


@pytest.fixture
async def buffer(logs: Collected) -> AsyncIterator[LogBuffer]:
    buffer = LogBuffer(logs, interval=0.01, max_line_bytes=1024, max_pending_lines=5000)
    yield buffer
    logs.gate.set()
    await buffer.close()


@pytest.fixture
def ctx(buffer: LogBuffer) -> JobContext:
    return JobContext(workflow_id="wf-1", job="build", attempt=3, worker_id="w-t", log_sink=buffer)


def run(command: str, **spec: Any) -> JobSpec:
    return JobSpec(run=command, **spec)


def alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies count as dead: init may reap orphans late or never)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def pids_in(lines: list[str]) -> dict[str, int]:
    return {m[1]: int(m[2]) for line in lines if (m := re.fullmatch(r"(\w+)=(\d+)", line))}


async def wait_for_line(logs: Collected, stream: str, pattern: str) -> None:
    await assert_eventually(
        lambda: any(re.search(pattern, line) for line in logs.lines(stream)),
        timeout=5,
        message=f"no {stream} line matching {pattern!r}",
    )


# --- success, outputs, environment ---------------------------------------------------------------


async def test_success_with_set_output_lines(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    command = (
        "echo hello; echo '::set-output version=1.2.3'; echo '::set-output name=url::s3://b=1'"
    )
    result = await ShellExecutor().execute(run(command), ctx)
    assert result == Succeeded(outputs={"version": "1.2.3", "url": "s3://b=1"})
    await buffer.close()
    assert logs.lines("stdout") == ["hello"]  # output commands stay out of the log


async def test_outputs_from_the_output_file(ctx: JobContext) -> None:
    command = """
        echo '::set-output a=from-stdout'
        echo 'a=from-file' >> "$JETWORK_OUTPUT"
        printf 'notes<<EOF\\nline 1\\nline 2\\nEOF\\n' >> "$JETWORK_OUTPUT"
    """
    result = await ShellExecutor().execute(run(command), ctx)
    assert result == Succeeded(outputs={"a": "from-file", "notes": "line 1\nline 2"})


async def test_malformed_output_file_fails_permanently(ctx: JobContext) -> None:
    result = await ShellExecutor().execute(run('echo "oops" >> "$JETWORK_OUTPUT"'), ctx)
    assert isinstance(result, Failed) and not result.retryable
    assert "invalid $JETWORK_OUTPUT file: line 1: expected `key=value`" in result.error


async def test_invalid_output_name_is_ignored_with_a_note(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    result = await ShellExecutor().execute(run("echo '::set-output bad.key=1'"), ctx)
    assert result == Succeeded(outputs={})
    await buffer.close()
    assert any(
        "ignored ::set-output with invalid name 'bad.key'" in x for x in logs.lines("system")
    )


async def test_environment(ctx: JobContext, buffer: LogBuffer, logs: Collected) -> None:
    """The worker's environment, then the job's `env`, then jetwork's own variables."""
    worker_env = {"PATH": os.environ["PATH"], "SECRET": "s3cr3t", "GREETING": "from the worker"}
    executor = ShellExecutor(environ=worker_env)
    spec = run(
        "\n".join(
            [
                'echo "greeting=$GREETING"',
                'echo "secret=${SECRET:-unset}"',
                'echo "wf=$JETWORK_WORKFLOW_ID"',
                'echo "job=$JETWORK_JOB"',
                'echo "attempt=$JETWORK_ATTEMPT"',
                'echo "worker=$JETWORK_WORKER_ID"',
                'echo "up=$JETWORK_UPSTREAM_OUTPUTS"',
                'echo "upfile=$(cat "$JETWORK_UPSTREAM_OUTPUTS_FILE")"',
            ]
        ),
        env={"GREETING": "hi there", "JETWORK_JOB": "spoofed"},
        upstream_outputs={"fetch": {"url": "s3://x"}},
    )
    assert isinstance(await executor.execute(spec, ctx), Succeeded)
    await buffer.close()
    out = dict(line.split("=", 1) for line in logs.lines("stdout"))
    assert out["greeting"] == "hi there"  # the job's env beats the worker's
    assert out["secret"] == "s3cr3t"  # the worker's environment is inherited
    assert (out["wf"], out["job"], out["attempt"], out["worker"]) == ("wf-1", "build", "3", "w-t")
    assert json.loads(out["up"]) == {"fetch": {"url": "s3://x"}}
    assert json.loads(out["upfile"]) == {"fetch": {"url": "s3://x"}}


@pytest.mark.parametrize(
    ("clear", "allow", "seen"),
    [
        (False, (), {"SECRET": "s3cr3t", "AWS_REGION": "eu-1", "AWS_KEY": "k"}),
        (True, (), {}),
        (True, ("SECRET", "AWS_*"), {"SECRET": "s3cr3t", "AWS_REGION": "eu-1", "AWS_KEY": "k"}),
    ],
    ids=["inherited", "cleared", "cleared-with-allow-list"],
)
async def test_env_clear_keeps_the_basics_and_the_allow_list(
    ctx: JobContext,
    buffer: LogBuffer,
    logs: Collected,
    clear: bool,
    allow: tuple[str, ...],
    seen: dict[str, str],
) -> None:
    worker_env = {
        "PATH": os.environ["PATH"],
        "HOME": "/h",
        "SECRET": "s3cr3t",
        "AWS_REGION": "eu-1",
        "AWS_KEY": "k",
    }
    executor = ShellExecutor(environ=worker_env, env_clear=clear, env_allow=allow)
    names = ["SECRET", "AWS_REGION", "AWS_KEY", "HOME"]
    command = "; ".join(f'echo "{n}=${{{n}:-unset}}"' for n in names)
    assert isinstance(await executor.execute(run(command), ctx), Succeeded)
    await buffer.close()
    out = dict(line.split("=", 1) for line in logs.lines("stdout"))
    assert out == {name: seen.get(name, "unset") for name in names} | {"HOME": "/h"}


async def test_stdout_and_stderr_keep_the_order_they_were_written_in(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    """One sequence across both streams, in write order, even when the job writes faster than
    the worker reads (plain pipes put ~35,000 of these 40,000 lines out of place)."""
    command = "i=0; while [ $i -lt 20000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done"
    assert isinstance(await ShellExecutor().execute(run(command), ctx), Succeeded)
    await buffer.close()
    assert [c.seq for c in logs.chunks] == list(range(1, 40001))
    written = [(f"std{s}", f"{s} {i}") for i in range(20000) for s in ("out", "err")]
    assert [(c.stream, c.line) for c in logs.chunks] == written
    stamps = [c.ts for c in logs.chunks]
    assert stamps == sorted(stamps)


async def test_writes_of_any_size_on_both_streams_keep_their_order(
    logs: Collected, tmp_path: Path
) -> None:
    """Writes of 0 to 9 KB plus a line number (several pipe packets), on both streams."""
    sizes = (0, 5, 4100, 9000)
    program = tmp_path / "writes.py"
    program.write_text(
        "import os, random\n"
        "rng = random.Random(7)\n"
        "for i in range(3000):\n"
        "    fd = rng.choice((1, 2))\n"
        f"    line = f'{{fd}}:{{i}}:' + 'x' * rng.choice({sizes})\n"
        "    os.write(fd, (line + '\\n').encode())\n"
    )
    async with LogBuffer(logs, interval=0.01, max_line_bytes=16384) as buffer:
        ctx = JobContext(workflow_id="wf-1", job="writes", log_sink=buffer)
        executor = ShellExecutor(max_log_line_bytes=16384)
        result = await executor.execute(run(f"python3 {program}"), ctx)
    assert isinstance(result, Succeeded), result
    rng = random.Random(7)
    written = []
    for i in range(3000):
        fd = rng.choice((1, 2))
        written.append(("stdout" if fd == 1 else "stderr", f"{fd}:{i}:" + "x" * rng.choice(sizes)))
    assert [(c.stream, c.line) for c in logs.chunks] == written


async def test_last_line_without_newline_is_kept(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    assert isinstance(await ShellExecutor().execute(run("printf 'a\\nb'"), ctx), Succeeded)
    await buffer.close()
    assert logs.lines("stdout") == ["a", "b"]


# --- failures ----------------------------------------------------------------------------------


async def test_non_zero_exit_fails_with_the_stderr_tail(ctx: JobContext) -> None:
    command = "i=1; while [ $i -le 30 ]; do echo problem $i >&2; i=$((i+1)); done; exit 3"
    result = await ShellExecutor().execute(run(command), ctx)
    assert isinstance(result, Failed)
    assert result.retryable and not result.timed_out
    lines = result.error.splitlines()
    assert lines[0] == "exit code 3"
    assert lines[1:] == [f"problem {i}" for i in range(11, 31)]


async def test_death_by_signal_is_reported(ctx: JobContext) -> None:
    result = await ShellExecutor().execute(run("kill -KILL $$"), ctx)
    assert isinstance(result, Failed) and result.error == "killed by signal SIGKILL"


async def test_missing_shell_is_a_retryable_failure(ctx: JobContext) -> None:
    result = await ShellExecutor(shell=("/nonexistent/sh", "-c")).execute(run("true"), ctx)
    assert isinstance(result, Failed) and result.retryable
    assert "cannot start '/nonexistent/sh'" in result.error


async def test_no_command_is_a_permanent_failure(ctx: JobContext) -> None:
    result = await ShellExecutor().execute(JobSpec(uses="x"), ctx)
    assert isinstance(result, Failed) and not result.retryable


# --- stopping: timeout, cancellation, lost lease ------------------------------------------------

TREE = 'sleep 60 & echo "child=$!"; (sleep 61 & echo "grandchild=$!"; wait) & wait'


async def test_timeout_kills_the_child_and_its_grandchildren(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    started = time.monotonic()
    result = await ShellExecutor().execute(run(TREE, timeout=1.0), ctx)
    assert result == Failed("timed out after 1s", retryable=True, timed_out=True)
    assert time.monotonic() - started < 5
    await buffer.close()
    pids = pids_in(logs.lines("stdout"))
    assert set(pids) == {"child", "grandchild"}
    assert not any(alive(pid) for pid in pids.values())


async def test_sigterm_ignored_escalates_to_sigkill(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    command = "trap '' TERM; sleep 60 & echo \"child=$!\"; wait"
    task = asyncio.ensure_future(ShellExecutor(kill_grace=0.3).execute(run(command), ctx))
    await wait_for_line(logs, "stdout", r"^child=\d+$")
    started = time.monotonic()
    ctx.request_cancel("enough")
    assert await asyncio.wait_for(task, 5) == Cancelled("enough")
    assert 0.25 < time.monotonic() - started < 3
    assert not alive(pids_in(logs.lines("stdout"))["child"])


async def test_cancellation_kills_within_a_second(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    task = asyncio.ensure_future(ShellExecutor().execute(run(f"{TREE} ; echo never"), ctx))
    await wait_for_line(logs, "stdout", r"^grandchild=\d+$")
    started = time.monotonic()
    ctx.request_cancel("user asked")
    result = await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0
    assert result == Cancelled("user asked")
    assert not any(alive(pid) for pid in pids_in(logs.lines("stdout")).values())


async def test_lease_lost_abandons_and_kills(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    task = asyncio.ensure_future(ShellExecutor().execute(run(TREE), ctx))
    await wait_for_line(logs, "stdout", r"^grandchild=\d+$")
    ctx.mark_lease_lost()
    result = await asyncio.wait_for(task, 5)
    assert isinstance(result, Abandoned)
    assert not result.reportable
    assert not any(alive(pid) for pid in pids_in(logs.lines("stdout")).values())


async def test_already_cancelled_job_does_not_start(ctx: JobContext) -> None:
    ctx.request_cancel()
    assert await ShellExecutor().execute(run("echo hi"), ctx) == Cancelled("cancelled by user")


async def test_background_leftovers_are_stopped_when_the_job_ends(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    started = time.monotonic()
    result = await ShellExecutor().execute(run('sleep 60 & echo "child=$!"; echo done'), ctx)
    assert result == Succeeded()
    assert time.monotonic() - started < 5
    await buffer.close()
    assert not alive(pids_in(logs.lines("stdout"))["child"])


async def test_outer_cancellation_kills_the_group(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    task = asyncio.ensure_future(ShellExecutor().execute(run(TREE), ctx))
    await wait_for_line(logs, "stdout", r"^grandchild=\d+$")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pids = pids_in(logs.lines("stdout"))
    await assert_eventually(lambda: not any(alive(pid) for pid in pids.values()), timeout=5)


# --- bounds ------------------------------------------------------------------------------------


async def test_huge_line_is_truncated(ctx: JobContext, buffer: LogBuffer, logs: Collected) -> None:
    command = "head -c 5000000 /dev/zero | tr '\\0' a; echo; echo next"
    assert isinstance(await ShellExecutor().execute(run(command), ctx), Succeeded)
    await buffer.close()
    first, second = logs.lines("stdout")
    assert first.startswith("a" * 1024 + " … [truncated ")
    assert first.endswith(f"[truncated {5_000_000 - 1024} bytes]")
    assert second == "next"


async def test_a_flood_waits_for_the_log_instead_of_dropping_lines(
    ctx: JobContext, buffer: LogBuffer, logs: Collected
) -> None:
    """Backpressure: while the publisher is stuck the job blocks on its writes and the backlog
    stays bounded; once it publishes again every line arrives, in order."""
    logs.gate.clear()  # the publisher is stuck
    run_job = asyncio.ensure_future(ShellExecutor().execute(run("seq 1 200000"), ctx))
    await assert_eventually(lambda: buffer.stats.waits > 0, timeout=5)
    assert not run_job.done()  # blocked on its writes, not finished with lines dropped
    # Held: the bound (5000), one batch in the stuck publisher (1000), one pipe packet (< 1000).
    assert buffer.stats.accepted < 7000
    logs.gate.set()
    assert await run_job == Succeeded()
    await buffer.close()
    assert logs.lines("stdout") == [str(i) for i in range(1, 200_001)]
    assert logs.lines("system") == []
    assert [c.seq for c in logs.chunks] == list(range(1, 200_001))


async def test_oversized_outputs_fail_permanently(ctx: JobContext) -> None:
    command = "printf '::set-output big=%s\\n' \"$(head -c 3000 /dev/zero | tr '\\0' x)\""
    result = await ShellExecutor(max_output_bytes=1000).execute(run(command), ctx)
    assert isinstance(result, Failed) and not result.retryable
    assert "outputs are 3003 bytes, over the worker's max_output_bytes of 1000" in result.error


async def test_oversized_output_file_fails_permanently(ctx: JobContext) -> None:
    command = 'head -c 5000 /dev/zero | tr "\\0" x > "$JETWORK_OUTPUT"'
    result = await ShellExecutor(max_output_bytes=1000).execute(run(command), ctx)
    assert isinstance(result, Failed) and not result.retryable
    assert "outputs written to $JETWORK_OUTPUT are 5000 bytes" in result.error


# --- pure helpers ------------------------------------------------------------------------------


def test_line_splitter_bounds_each_line() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"cdef\nxy\n") == [(b"abcd", 2), (b"xy", 0)]
    assert splitter.feed(b"123456") == []
    assert splitter.finish() == (b"1234", 2)
    assert splitter.finish() is None


def test_parse_output_file() -> None:
    text = "a=1\n\nb=x=y\nc<<END\nl1\nl2\nEND\nd=\n"
    assert parse_output_file(text) == [("a", "1"), ("b", "x=y"), ("c", "l1\nl2"), ("d", "")]
    with pytest.raises(ValueError, match="delimiter 'END' never closes 'c'"):
        parse_output_file("c<<END\nno end")
    with pytest.raises(ValueError, match="output name 'a b' is not valid"):
        parse_output_file("a b=1")


# --- hearing back ------------------------------------------------------------------------------


async def test_an_exit_the_event_loop_never_reports_is_noticed_within_seconds(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio's report of the exit is lost: the probe sees the exit and the job ends anyway."""
    monkeypatch.setattr(shell._ExitProtocol, "process_exited", lambda self: None)
    monkeypatch.setattr(shell._ExitProtocol, "connection_lost", lambda self, exc: None)
    started = time.monotonic()
    with structlog.testing.capture_logs() as captured:
        result = await ShellExecutor().execute(run("echo '::set-output ok=1'"), ctx)
    took = time.monotonic() - started
    assert result == Succeeded(outputs={"ok": "1"})
    assert took < EXIT_PROBE_EVERY + EXIT_REPORT_GRACE + 1.5, took
    assert [e["event"] for e in captured if e["log_level"] == "error"] == [
        "a job's process exited but the event loop never reported it: taking its exit from "
        "the kernel"
    ]


async def test_the_exit_probe_takes_the_exit_status_itself(tmp_path: Path) -> None:
    """A child nobody reaps: after the grace the probe reaps it and keeps its exit code."""
    child = subprocess.Popen(["sh", "-c", "exit 7"])  # noqa: ASYNC220 - asyncio would reap it
    exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with structlog.testing.capture_logs() as captured:
        probe = ExitProbe(child.pid, exited, job="orphan")
        await asyncio.wait_for(exited, EXIT_PROBE_EVERY + EXIT_REPORT_GRACE + 2)
    assert probe.returncode == 7
    assert captured[0]["pid"] == child.pid and captured[0]["returncode"] == 7
    probe.stop()


async def test_a_process_that_left_the_group_and_keeps_writing_is_not_waited_for(
    ctx: JobContext, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    command = f"setsid sh -c 'echo $$ > {pid_file}; sleep 0.5; exec yes escaped' & sleep 0.2"
    started = time.monotonic()
    try:
        result = await ShellExecutor().execute(run(command), ctx)
        took = time.monotonic() - started
    finally:
        await assert_eventually(pid_file.exists)
        os.kill(int(pid_file.read_text()), 9)
    assert isinstance(result, Succeeded)
    assert took < shell.PIPES_LIMIT + 2, took  # the flood is read for at most 256 KiB or 3 s
