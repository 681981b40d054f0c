"""The ``jetwork`` CLI through its entry point, against a real nats-server.

Most commands run in-process with click's ``CliRunner`` (in a thread: each command runs its own
event loop, while the engine runs on the test's). The in-test runner stands in for workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from nats.aio.client import Client as NATS

from actors.engine import Engine
from actors.job import JobState
from events import subjects
from events.store import EventStore
from projections.projector import Projector
from projections.reader import Views
from sdk.cli import main
from sdk.cli._common import configure_logging
from sdk.client import Client
from sdk.worker import Worker
from sdk.worker.config import WorkerConfig
from tests.engine_harness import InTestRunner, Outcome, RecordingDispatcher, running_engine
from tests.eventually import assert_eventually
from tests.integration.test_client import FAST_PROJECTOR, complete, publish_log

VIEW_KEYS = {"workflow_id", "name", "status", "started_at", "ended_at", "reason", "jobs",
             "restarted_from", "restarted_as", "vars", "parent", "outputs", "version",
             "inputs", "labels", "group", "namespace"}  # fmt: skip
JOB_KEYS = {"status", "attempts", "outputs", "error", "worker_id", "started_at", "ended_at",
            "reason", "waiting_for", "wait", "child_workflow_id", "child_workflow", "iteration",
            "sleeping_until", "poll_count", "callback_at"}  # fmt: skip
COMMANDS = [
    ["run"], ["status"], ["list"], ["cancel"], ["logs"], ["history"], ["watch"],
    ["dead-letters"], ["server"], ["workers"], ["projections", "rebuild"], ["demo"], ["worker"],
    ["pause"], ["resume"], ["skip"], ["retry"], ["rerun"], ["restart"], ["signal"], ["set"],
    ["handlers"],
    ["delete"], ["projector"],
]  # fmt: skip
# Every command that connects to a server, with the arguments it needs to get that far.
CONNECTING = [
    ["list"], ["cancel", "wf-x"], ["logs", "wf-x", "a"], ["history", "wf-x"], ["workers"],
    ["dead-letters"], ["projections", "rebuild"], ["status", "wf-x"], ["run", "FILE"],
    ["watch"], ["server"], ["demo", "--example", "FILE"], ["pause", "wf-x"], ["resume", "wf-x"],
    ["skip", "wf-x", "a"], ["retry", "wf-x"], ["rerun", "wf-x", "--from", "a"], ["restart", "wf-x"],
    ["signal", "wf-x", "go"],
    ["set", "wf-x", "k=v"], ["handlers"],
    ["delete", "wf-x"], ["projector"],
]  # fmt: skip
UNREACHABLE = "nats://127.0.0.1:1"


def greet(state: JobState) -> Outcome:
    return Outcome(outputs={"greeting": "hello"})


@dataclass
class Cli:
    nc: NATS
    url: str
    engine: Engine
    runner: InTestRunner

    async def __call__(self, *args: str) -> Result:
        return await invoke(*args, "--nats", self.url)


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


@pytest.fixture
async def cli(clean_nats: NATS, nats_url: str) -> AsyncIterator[Cli]:
    dispatcher = RecordingDispatcher()
    engine = await running_engine(clean_nats, dispatcher)
    runner = InTestRunner(EventStore(clean_nats), dispatcher, greet).start()
    try:
        yield Cli(clean_nats, nats_url, engine, runner)
    finally:
        await runner.stop()
        await engine.stop()


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "two.yaml"
    path.write_text(
        "name: two\n"
        "inputs: {who: {default: world}}\n"
        "jobs:\n"
        "  a: {run: echo a}\n"
        "  b: {needs: [a], run: 'echo ${{ needs.a.outputs.greeting }} ${{ inputs.who }}'}\n"
    )
    return path


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result


def failed(result: Result, *fragments: str) -> str:
    """A clean failure: exit 1, the message on stderr, no traceback."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


async def started(cli: Cli, path: Path, *args: str) -> str:
    result = ok(await cli("run", str(path), *args))
    workflow_id = result.stdout.strip()
    assert workflow_id.startswith("wf-") and "\n" not in workflow_id
    return workflow_id


async def test_run_prints_the_id_alone_and_status_shows_it(cli: Cli, workflow_file: Path) -> None:
    workflow_id = await started(cli, workflow_file, "--input", "who=cli")

    async def succeeded() -> dict[str, object]:
        result = await cli("status", workflow_id, "--json")
        view = json.loads(result.stdout) if result.exit_code == 0 else {}
        return view if view.get("status") == "succeeded" else {}

    view = await assert_eventually(succeeded)
    assert set(view) == VIEW_KEYS
    assert view["workflow_id"] == workflow_id
    jobs = view["jobs"]
    assert isinstance(jobs, dict)
    assert list(jobs) == ["a", "b"]
    assert all(set(job) == JOB_KEYS for job in jobs.values())
    assert jobs["a"]["outputs"] == {"greeting": "hello"}

    human = ok(await cli("status", workflow_id)).stdout
    assert "two" in human
    assert "succeeded" in human
    assert "greeting=hello" in human


async def test_run_wait_exits_0_on_success_and_1_on_failure(cli: Cli, workflow_file: Path) -> None:
    result = ok(await cli("run", str(workflow_file), "--wait"))
    assert "succeeded" in result.stdout
    for job in ("a", "b"):
        assert job in result.stdout

    cli.runner.behaviour = lambda state: Outcome(error="boom", retryable=False)
    result = await cli("run", str(workflow_file), "--wait")
    assert result.exit_code == 1, result.output
    assert "failed" in result.stdout
    assert "boom" in result.stdout


async def test_run_wait_json_prints_the_final_view(cli: Cli, workflow_file: Path) -> None:
    result = ok(await cli("run", str(workflow_file), "-i", "who=json", "--wait", "--json"))
    view = json.loads(result.stdout)
    assert set(view) == VIEW_KEYS
    assert view["status"] == "succeeded"
    assert view["jobs"]["b"]["status"] == "succeeded"
    assert view["ended_at"] is not None

    result = ok(await cli("run", str(workflow_file), "--json"))
    assert json.loads(result.stdout).keys() == {"workflow_id"}


async def test_run_with_an_idempotency_key_twice_is_one_workflow(
    cli: Cli, workflow_file: Path
) -> None:
    first = await started(cli, workflow_file, "--idempotency-key", "deploy-7")
    second = await started(cli, workflow_file, "--idempotency-key", "deploy-7")
    assert first == second


async def test_an_invalid_file_lists_every_located_problem(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\njobs:\n  a: {run: echo, needs: [nope]}\n  b: {retry: x}\n")
    stderr = failed(await cli("run", str(path)), "invalid workflow", f"{path}:3", f"{path}:4")
    assert stderr.count("\n  - ") >= 3
    failed(await cli("run", str(tmp_path / "missing.yaml")), "cannot read")


async def test_bad_inputs_are_clear_errors(cli: Cli, workflow_file: Path) -> None:
    failed(await cli("run", str(workflow_file), "--input", "who"), "expected KEY=VALUE")
    failed(await cli("run", str(workflow_file), "-i", "who=a", "-i", "who=b"), "given twice")
    failed(await cli("run", str(workflow_file), "--input", "whom=x"), "unknown input")


@pytest.mark.parametrize("value", ["sometimes", "2 minutes", "0s", "-1m", "10"])
async def test_a_bad_sync_interval_is_refused_before_anything_starts(value: str) -> None:
    result = await invoke("server", "--sync-interval", value)
    assert result.exit_code == 2, result.output
    assert "use 'always' or a duration" in result.output
    assert "Traceback" not in result.output


async def test_unknown_ids_are_clear_errors(cli: Cli) -> None:
    for args in (["status", "wf-nope"], ["history", "wf-nope"], ["cancel", "wf-nope"],
                 ["logs", "wf-nope", "a"]):  # fmt: skip
        failed(await cli(*args), "workflow 'wf-nope' not found")
    failed(await cli("status", "not.an.id"), "is not valid")


@pytest.mark.parametrize("command", CONNECTING, ids=" ".join)
async def test_an_unreachable_server_is_a_one_line_error(
    command: list[str], workflow_file: Path
) -> None:
    args = [str(workflow_file) if arg == "FILE" else arg for arg in command]
    stderr = failed(await invoke(*args, "--nats", UNREACHABLE), "cannot reach the NATS server")
    assert stderr.count("\n") == 1, stderr  # one line, no log or traceback around it
    assert UNREACHABLE in stderr


@pytest.mark.parametrize("variable", ["JETWORK_PROJECTOR_SETTLE", "JETWORK_ENGINE_BATCH"])
async def test_a_bad_server_setting_is_a_one_line_error_before_anything_starts(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(variable, "soon")
    stderr = failed(await invoke("server", "--data-dir", str(tmp_path)), variable, "'soon'")
    assert stderr.count("\n") == 1, stderr
    assert not (tmp_path / "nats").exists()  # no embedded server was started


async def test_a_server_without_the_streams_says_to_run_jetwork_server(
    clean_nats: NATS, nats_url: str, workflow_file: Path
) -> None:
    js = clean_nats.jetstream()
    for stream in ("JW_COMMANDS", "JW_EVENTS"):
        await js.delete_stream(stream)
    failed(await invoke("run", str(workflow_file), "--nats", nats_url), "`jetwork server`")
    failed(await invoke("status", "wf-x", "--nats", nats_url), "JW_EVENTS")


async def test_cancel_then_status_shows_it_cancelled(cli: Cli, workflow_file: Path) -> None:
    await cli.runner.stop()  # nobody claims: the first job stays queued
    workflow_id = await started(cli, workflow_file)

    async def cancelled() -> bool:
        assert (await cli("cancel", workflow_id, "--reason", "no longer needed")).exit_code == 0
        result = await cli("status", workflow_id, "--json")
        return result.exit_code == 0 and json.loads(result.stdout)["status"] == "cancelled"

    await assert_eventually(cancelled)
    view = json.loads(ok(await cli("status", workflow_id, "--json")).stdout)
    assert view["reason"] == "no longer needed"


async def test_history_lists_every_event_in_order(cli: Cli, workflow_file: Path) -> None:
    result = ok(await cli("run", str(workflow_file), "--wait", "--json"))
    workflow_id = json.loads(result.stdout)["workflow_id"]
    events = json.loads(ok(await cli("history", workflow_id, "--json")).stdout)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[0]["type"] == "WorkflowStarted"
    assert events[0]["actor"] == "workflow"
    assert events[0]["data"]["definition"]["name"] == "two"
    assert events[-1]["type"] == "WorkflowSucceeded"
    assert {"seq", "time", "subject", "actor", "type", "data"} == set(events[1])
    assert events[1]["actor"] == "job a"
    human = ok(await cli("history", workflow_id)).stdout
    assert "WorkflowStarted" in human
    assert "JobSucceeded" in human


async def test_logs_prints_lines_and_follows_until_the_job_ends(
    cli: Cli, workflow_file: Path
) -> None:
    cli.runner.behaviour = lambda state: Outcome(hang=True)
    workflow_id = await started(cli, workflow_file)
    await assert_eventually(lambda: cli.runner.hanging, message="job never started")
    await publish_log(cli.nc, workflow_id, "a", 1, ["first", "second"])
    assert ok(await cli("logs", workflow_id, "a")).stdout == "── attempt 1 ──\nfirst\nsecond\n"

    follower = asyncio.create_task(cli("logs", workflow_id, "a", "--follow"))
    await publish_log(cli.nc, workflow_id, "a", 1, ["third"], first_seq=3)
    cli.runner.behaviour = greet
    _, name, epoch = cli.runner.hanging[0]
    await complete(cli.runner, workflow_id, name, epoch)
    result = ok(await asyncio.wait_for(follower, 15))
    assert result.stdout == "── attempt 1 ──\nfirst\nsecond\nthird\n"
    failed(await cli("logs", workflow_id, "zzz"), "has no job 'zzz'")


async def test_watch_prints_matching_events(cli: Cli, workflow_file: Path) -> None:
    workflow_id = await started(cli, workflow_file)
    result = ok(
        await cli(
            "watch",
            "--workflow",
            workflow_id,
            "--type",
            "JobSucceeded",
            "--from-start",
            "--count",
            "2",
            "--json",
        )
    )
    # It says on stderr what it waits for, so stdout stays one JSON object per line.
    assert f"waiting for JobSucceeded events of workflow {workflow_id}" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["actor"], e["type"]) for e in lines] == [
        ("job a", "JobSucceeded"),
        ("job b", "JobSucceeded"),
    ]
    result = ok(await cli("watch", "--workflow", workflow_id, "--from-start", "--count", "1"))
    assert "WorkflowStarted" in result.stdout
    failed(await cli("watch", "--type", "Nope"), "unknown event type 'Nope'")


async def test_dead_letters_lists_refused_input(cli: Cli) -> None:
    assert "no dead letters" in ok(await cli("dead-letters")).stdout
    garbage = subjects.command("start", "wf-garbage")
    await cli.nc.jetstream().publish(garbage, b"{not json")

    async def letters() -> list[dict[str, object]]:
        rows: list[dict[str, object]] = json.loads(ok(await cli("dead-letters", "--json")).stdout)
        return rows

    rows = await assert_eventually(letters)
    assert rows[0]["subject"] == garbage
    assert "malformed command" in str(rows[0]["reason"])
    assert garbage in ok(await cli("dead-letters")).stdout


async def test_list_workers_and_rebuild(cli: Cli, workflow_file: Path) -> None:
    projector = Projector(cli.nc, settings=FAST_PROJECTOR)
    await projector.start()
    worker = Worker(WorkerConfig(nats_url=cli.url, labels=frozenset({"linux"})))
    try:
        assert "no workflows" in ok(await cli("list")).stdout
        ids = [json.loads(ok(await cli("run", str(workflow_file), "--wait", "--json")).stdout)
               ["workflow_id"] for _ in range(2)]  # fmt: skip
        await Views(cli.nc).wait_caught_up()
        rows = json.loads(ok(await cli("list", "--json")).stdout)
        assert [row["workflow_id"] for row in rows] == ids[::-1]
        assert rows[0]["job_counts"]["succeeded"] == 2
        assert json.loads(ok(await cli("list", "--status", "failed", "--json")).stdout) == []
        assert ids[0] in ok(await cli("list", "--name", "two")).stdout
        assert (await cli("list", "--status", "done")).exit_code == 2  # click's usage error

        assert "no live workers" in ok(await cli("workers")).stdout
        configure_logging()  # the worker's logs to stderr: CliRunner captures stdout process-wide
        await worker.start()
        found = json.loads(ok(await cli("workers", "--json")).stdout)
        assert [(w["worker_id"], w["labels"]) for w in found["workers"]] == [
            (worker.worker_id, ["linux"])
        ]
        assert found["unserved"] == []
        assert worker.worker_id in ok(await cli("workers")).stdout

        stats = json.loads(ok(await cli("projections", "rebuild", "--json")).stdout)
        assert stats["workflows"] == 2
        assert "rebuilt 2 workflow view(s)" in ok(await cli("projections", "rebuild")).stdout
        assert json.loads(ok(await cli("list", "--json")).stdout) == rows
    finally:
        await worker.stop()
        await projector.stop()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
async def test_every_command_has_help_with_an_example_and_nats(command: list[str]) -> None:
    result = ok(await invoke(*command, "--help"))
    assert "Example" in result.stdout
    assert "--nats" in result.stdout


def run_module(args: Sequence[str]) -> tuple[int, str, str]:
    process = subprocess.run(
        [sys.executable, "-m", "sdk.cli", *args], capture_output=True, text=True, timeout=60
    )
    return process.returncode, process.stdout, process.stderr


async def test_the_module_entry_point_reports_errors_without_a_traceback(
    clean_nats: NATS, nats_url: str
) -> None:
    code, stdout, stderr = await asyncio.to_thread(
        run_module, ["status", "wf-nope", "--nats", nats_url]
    )
    assert code == 1
    assert stdout == ""
    assert stderr.strip() == "error: workflow 'wf-nope' not found"


def jetwork_script() -> str:
    return str(Path(sys.executable).parent / "jetwork")


def test_the_demo_runs_end_to_end_as_a_subprocess() -> None:
    # `make demo` is self-contained: a JETWORK_NATS_URL left in the environment does not matter.
    env = {**os.environ, "JETWORK_NATS_URL": UNREACHABLE}
    began = time.monotonic()
    process = subprocess.run(
        [jetwork_script(), "demo"], capture_output=True, text=True, timeout=90, env=env
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert time.monotonic() - began < 45
    out = process.stdout
    assert "hello succeeded, diamond succeeded, release succeeded" in out
    assert "demo-linux" in out and "demo-gpu" in out
    assert "first attempt fails on purpose" in out  # the retried job's log
    assert "Where to look next" in out
    assert "Traceback" not in process.stderr


async def test_the_demo_runs_on_the_server_given_with_nats(
    clean_nats: NATS, nats_url: str, repo_root: Path
) -> None:
    examples = [repo_root / "examples" / name for name in ("hello.yaml", "diamond.yaml")]
    command = [jetwork_script(), "demo", "--nats", nats_url]
    for path in examples:
        command += ["--example", str(path)]
    process = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=90
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert f"your nats-server on {nats_url}" in process.stdout
    assert "embedded" not in process.stdout
    assert "hello succeeded, diamond succeeded" in process.stdout
    assert "Traceback" not in process.stderr
    # The runs are in that server's log and views: the demo caught the projector up before listing.
    rows = await Client(clean_nats).list()
    assert sorted((row.name, row.status) for row in rows) == [
        ("diamond", "succeeded"),
        ("hello", "succeeded"),
    ]


async def test_server_runs_the_engine_on_its_embedded_nats_until_sigterm(
    tmp_path: Path, repo_root: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JETWORK_NATS_URL"}
    server = await asyncio.create_subprocess_exec(
        jetwork_script(), "server", "--port", "0", "--data-dir", str(tmp_path / "jw"),
        "--sync-interval", "2m", "--http", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert server.stderr is not None
    try:
        lines: list[str] = []
        while not any(line.startswith("ready") for line in lines):
            line = (await asyncio.wait_for(server.stderr.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        url = next(line.split(" on ")[1].split()[0] for line in lines if "nats-server on" in line)
        assert any(f"export JETWORK_NATS_URL={url}" in line for line in lines)
        assert any("sync_interval 2m" in line for line in lines), lines
        # The HTTP gateway is served by default (here on a free port).
        http_line = (await asyncio.wait_for(server.stderr.readline(), 30)).decode()
        assert "HTTP gateway on http://127.0.0.1:" in http_line, http_line
        async with httpx.AsyncClient(base_url=http_line.split(" on ")[1].split()[0]) as http:
            assert (await http.get("/healthz")).json() == {"ok": True, "nats": "connected"}

        configure_logging()  # the worker's logs to stderr: CliRunner captures stdout process-wide
        worker = Worker(WorkerConfig(nats_url=url, poll_interval=0.5))
        await worker.start()
        try:
            result = await invoke(
                "run", str(repo_root / "examples" / "hello.yaml"), "-i", "who=server",
                "--wait", "--json", "--nats", url,
            )  # fmt: skip
            view = json.loads(ok(result).stdout)
            assert view["status"] == "succeeded"
            logs = ok(await invoke("logs", view["workflow_id"], "greet", "--nats", url))
            assert logs.stdout == "── attempt 1 ──\nhello, server\n"

            async def listed() -> bool:
                rows = json.loads(ok(await invoke("list", "--json", "--nats", url)).stdout)
                return [row["workflow_id"] for row in rows] == [view["workflow_id"]]

            await assert_eventually(listed)
        finally:
            await worker.stop()
        server.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(server.communicate(), 30)
        assert server.returncode == 0, rest
        assert b"stopped" in rest
        assert b"Traceback" not in rest
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


@pytest.mark.parametrize("command", ["server", "gateway"])
async def test_http_on_a_public_address_without_tokens_is_refused_before_anything_starts(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JETWORK_HTTP_TOKENS", raising=False)
    exposed = failed(
        await invoke(command, "--http", "0.0.0.0:0", "--nats", UNREACHABLE),
        "not a loopback address",
        "JETWORK_HTTP_TOKENS",
        "--insecure",
    )
    assert "cannot reach" not in exposed  # refused before connecting to anything
    monkeypatch.setenv("JETWORK_HTTP_TOKENS", "admin:short")
    failed(await invoke(command, "--nats", UNREACHABLE), "8 characters or more")
    monkeypatch.setenv("JETWORK_HTTP_TOKENS", "")
    failed(await invoke(command, "--http", "nowhere", "--nats", UNREACHABLE), "HOST:PORT")


async def test_gateway_start_failures_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JETWORK_HTTP_TOKENS", raising=False)
    failed(
        await invoke("gateway", "--http", "127.0.0.1:0", "--nats", UNREACHABLE),
        "cannot reach the NATS server",
    )
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        failed(
            await invoke("gateway", "--http", f"127.0.0.1:{port}", "--nats", UNREACHABLE),
            f"cannot serve HTTP on 127.0.0.1:{port}",
        )
    finally:
        taken.close()
