# ruff: noqa: F811  (the ``cli`` fixture, imported, is every test's parameter)
"""``jetwork definitions`` and ``jetwork schedules`` through the entry point, on a real engine:
what each prints (``--json`` too), ``run NAME[@VERSION]``, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli import (  # noqa: F401  (fixtures)
    UNREACHABLE,
    Cli,
    cli,
    failed,
    invoke,
    ok,
)

NIGHTLY = Path(__file__).parents[2] / "examples" / "nightly.yaml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_register_list_show_and_run_by_name_and_version(cli: Cli, tmp_path: Path) -> None:
    one = write(tmp_path, "one.yaml", "name: greet\njobs:\n  a: {run: echo one}\n")
    two = write(tmp_path, "two.yaml", "name: greet\njobs:\n  a: {run: echo two}\n")
    assert ok(await cli("definitions", "register", str(one))).stdout == "registered greet@1\n"
    assert ok(await cli("definitions", "register", str(one))).stdout == (
        f"unchanged: {one} is greet@1 already\n"
    )
    stored = json.loads(ok(await cli("definitions", "register", str(two), "--json")).stdout)
    assert (stored["reference"], stored["created"]) == ("greet@2", True)
    pinned = write(tmp_path, "p.yaml", "name: greet\nversion: 2\njobs:\n  a: {run: echo x}\n")
    failed(await cli("definitions", "register", str(pinned)), "greet@2 is registered already")

    listed = json.loads(ok(await cli("definitions", "list", "--json")).stdout)
    assert [(d["reference"], d["versions"]) for d in listed] == [("greet@2", 2)]
    assert "greet" in ok(await cli("definitions", "list")).stdout
    shown = ok(await cli("definitions", "show", "greet@1")).stdout
    assert shown.startswith("# greet@1, registered ") and "run: echo one" in shown

    workflow_id = ok(await cli("run", "greet@1", "--wait", "--json"))
    view = json.loads(workflow_id.stdout)
    assert (view["status"], view["version"]) == ("succeeded", 1)
    latest = json.loads(ok(await cli("run", "greet", "--json")).stdout)["workflow_id"]
    status = ok(await cli("status", latest)).stdout
    assert "definition: greet@2" in status

    failed(await cli("run", "greet@9"), "greet@9 is not registered (registered: versions 1, 2)")
    failed(await cli("run", "nope"), "no definition named 'nope'", "no file 'nope'")
    failed(await cli("run", "greet@1", "--dry-run"), "--dry-run reads a file, not a registered")
    failed(await cli("definitions", "show", "bad.name"), "not a definition's name")


async def test_schedules_add_list_pause_resume_delete(cli: Cli, tmp_path: Path) -> None:
    assert ok(await cli("schedules")).stdout.startswith("no schedules")
    added = ok(await cli("schedules", "add", str(NIGHTLY), "-i", "target=prod")).stdout
    assert added.startswith("scheduled nightly: next tick ")
    again = ok(await cli("schedules", "add", str(NIGHTLY), "-i", "target=prod")).stdout
    assert again == "unchanged: schedule nightly holds this already\n"
    [entry] = json.loads(ok(await cli("schedules", "--json")).stdout)
    assert (entry["name"], entry["inputs"], entry["paused"]) == (
        "nightly",
        {"target": "prod"},
        False,
    )
    assert [rule["timezone"] for rule in entry["rules"]] == ["Europe/Berlin", None]
    assert entry["next_tick"] is not None
    table = ok(await cli("schedules")).stdout
    assert "cron 30 2 * * * (Europe/Berlin)" in table and "every 30s" in table

    assert (
        ok(await cli("schedules", "pause", "nightly", "--by", "ops")).stdout == "paused nightly\n"
    )
    assert "is paused already" in ok(await cli("schedules", "pause", "nightly")).stdout
    [entry] = json.loads(ok(await cli("schedules", "--json")).stdout)
    assert (entry["paused"], entry["paused_by"], entry["next_tick"]) == (True, "ops", None)
    assert "paused by ops" in ok(await cli("schedules")).stdout
    resumed = ok(await cli("schedules", "resume", "nightly")).stdout
    assert resumed.startswith("resumed nightly: next tick ")
    assert ok(await cli("schedules", "resume", "nightly")).stdout == "nightly is not paused\n"
    assert ok(await cli("schedules", "delete", "nightly")).stdout == "deleted nightly\n"
    failed(await cli("schedules", "delete", "nightly"), "no schedule named 'nightly'")
    failed(await cli("schedules", "pause", "a.b"), "is not a valid name")

    plain = write(tmp_path, "plain.yaml", "name: plain\njobs:\n  a: {run: echo}\n")
    failed(await cli("schedules", "add", str(plain)), "plain has no schedule")
    bad = write(
        tmp_path,
        "bad.yaml",
        "name: bad\njobs:\n  a: {run: echo}\nschedule:\n  - cron: '0 3 * *'\n"
        "  - {cron: '0 3 * * *', timezone: Europe/Nowhere}\n  - every: 0.2s\n",
    )
    stderr = failed(await cli("schedules", "add", str(bad)))
    for located in (f"{bad}:5 schedule[0].cron", f"{bad}:6 schedule[1].timezone",
                    f"{bad}:7 schedule[2].every"):  # fmt: skip
        assert located in stderr, stderr
    failed(await cli("schedules", "add", str(NIGHTLY), "-i", "nope=1"), "unknown input")


@pytest.mark.parametrize(
    "command",
    [
        ["definitions", "list"],
        ["definitions", "show", "x"],
        ["schedules"],
        ["schedules", "pause", "x"],
        ["run", "some-name"],
    ],
    ids=" ".join,
)
async def test_an_unreachable_server_is_a_one_line_error(command: list[str]) -> None:
    stderr = failed(await invoke(*command, "--nats", UNREACHABLE), "cannot reach the NATS server")
    assert stderr.count("\n") == 1, stderr
