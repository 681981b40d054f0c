"""``jetwork run FILE --dry-run`` needs no server (none is given: ``--nats`` points nowhere)."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from sdk.cli import main

NOWHERE = ("--nats", "nats://127.0.0.1:1")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", "examples/diamond.yaml", *args, *NOWHERE])
    return result.exit_code, result.stdout, result.stderr


def test_a_dry_run_prints_each_job_and_the_end_without_a_server() -> None:
    code, out, _ = invoke("--dry-run", "--mock", 'left={"value": "7"}', "--fail", "flaky")
    assert code == 1
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:-1]}
    assert lines == {
        "start": "succeeded",
        "left": "succeeded",
        "flaky": "failed",
        "join": "skipped",
        "report": "skipped",
        "cleanup": "succeeded",
    }
    assert "outputs value=7 (mocked)" in out
    assert out.splitlines()[-1] == "would end: failed (1 job(s) failed: flaky)"


def test_a_dry_run_as_json_exits_0_when_it_would_succeed() -> None:
    code, out, _ = invoke("--dry-run", "--json", "-i", "size=5")
    assert code == 0
    result = json.loads(out)
    assert (result["status"], result["inputs"]) == ("succeeded", {"size": 5})
    assert result["jobs"]["report"]["status"] == "skipped"


def test_bad_mocks_and_mocks_without_dry_run_are_clear_errors() -> None:
    code, _, err = invoke("--dry-run", "--mock", "left=[1]")
    assert (code, err.strip()) == (
        1,
        "error: --mock left: expected a JSON object of outputs, got '[1]'",
    )
    code, _, err = invoke("--fail", "flaky")
    assert (code, err.strip()) == (1, "error: --mock and --fail go with --dry-run")
    code, _, err = invoke("--dry-run", "--fail", "nope")
    assert code == 1 and "'nope': the workflow has no such job" in err


def invoke_file(path: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", path, "--dry-run", *args, *NOWHERE])
    return result.exit_code, result.stdout, result.stderr


def test_a_matrix_ends_and_prints_its_instances_below_it() -> None:
    code, out, _ = invoke_file("examples/matrix.yaml", "--mock", 'test-1={"tested": "x"}')
    assert code == 0
    assert out.splitlines()[-1] == "would end: succeeded"
    names = re.findall(r"^ *(\S+) +succeeded ", out, re.MULTILINE)
    assert names == ["test", "test-0", "test-1", "test-2", "test-3", "summary"]
    assert "\n  test-1  " in out and "fan-out: 4 instances" in out
    assert "outputs tested=x (mocked)" in out


def test_a_failed_instance_and_a_child_run_as_json() -> None:
    code, out, _ = invoke_file("examples/matrix.yaml", "--fail", "test-0", "--json")
    result = json.loads(out)
    assert code == 1 and result["jobs"]["test-0"]["failed_on_purpose"]
    assert result["jobs"]["test-0"]["instance_of"] == "test"
    assert result["jobs"]["test"]["instances"] == 4
    code, out, _ = invoke_file("examples/parent.yaml", "--json")
    child = json.loads(out)["jobs"]["child"]
    assert code == 0 and child["workflow"] == "./child.yaml"
    assert list(child["child"]["jobs"]) == ["greet", "count"]


def test_a_registered_child_is_said_to_need_a_mock() -> None:
    code, out, _ = invoke_file("examples/parent_named.yaml", "--mock", 'hello={"greeting": "hi"}')
    assert code == 0
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: shout: 'child@1' is a registered")
    assert "  child" not in out  # nothing of it decided here
