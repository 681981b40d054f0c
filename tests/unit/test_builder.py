"""The Python builder: same definitions as YAML, same validation, same problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from actors.definitions import load_workflow_file, load_workflow_text, parse_workflow
from events.definition import Backoff, RetryPolicy
from events.errors import InvalidWorkflow
from sdk.builder import Input, JobRef, Retry, Workflow

DATA = Path(__file__).parents[1] / "data" / "workflows"
EXAMPLES = Path(__file__).parents[2] / "examples"


def issue_example() -> Workflow:
    wf = Workflow("release", inputs={"version": "0.1.0"}, env={"REGION": "eu"}, timeout="30m")
    build = wf.job(
        "build",
        run='make build && echo "::set-output artifact=dist/app-${{ inputs.version }}.tar.gz"',
        labels=["linux"],
        timeout="10m",
        retry=Retry(max_attempts=3, backoff="exponential", delay="1s", max_delay="30s"),
    )
    test = wf.job(
        "test",
        needs=[build],
        run=f"./test.sh {build.output('artifact')}",
        env={"ARTIFACT": build.output("artifact")},
    )
    lint = wf.job("lint", needs=build, run="./lint.sh", on_failure="continue")
    wf.job("notify", needs_any=[test, lint], if_="${{ always() }}", delay="5s", run="./notify.sh")
    return wf


def test_builder_equals_the_issue_yaml() -> None:
    assert issue_example().build() == load_workflow_file(DATA / "valid" / "issue_example.yaml")


def test_to_dict_round_trips_through_yaml() -> None:
    wf = issue_example()
    text = yaml.safe_dump(wf.to_dict(), sort_keys=False)
    assert load_workflow_text(text) == wf.build()


def test_to_dict_is_the_raw_mapping() -> None:
    wf = Workflow("hello", inputs={"who": Input(default="world", description="whom to greet")})
    wf.job("greet", run='echo "hello, ${{ inputs.who }}"')
    assert wf.to_dict() == {
        "name": "hello",
        "inputs": {"who": {"default": "world", "description": "whom to greet"}},
        "jobs": {"greet": {"run": 'echo "hello, ${{ inputs.who }}"'}},
    }
    assert wf.build() == load_workflow_file(EXAMPLES / "hello.yaml")


def test_build_reports_the_same_problems_as_parse_workflow() -> None:
    wf = Workflow("bad name", timeout="soon")
    wf.job("a", run="x", needs=["biuld"], retry=Retry(max_attempts=0))
    wf.job("b")
    with pytest.raises(InvalidWorkflow) as built:
        wf.build()
    with pytest.raises(InvalidWorkflow) as parsed:
        parse_workflow(wf.to_dict())
    assert built.value.problems == parsed.value.problems
    assert len(built.value.problems) == 5
    assert built.value.source == "bad name"


def test_a_job_name_used_twice_is_refused_at_once() -> None:
    wf = Workflow("wf")
    wf.job("a", run="x")
    with pytest.raises(InvalidWorkflow, match=r"jobs\.a: duplicate job name"):
        wf.job("a", run="y")


def test_job_refs_give_expressions() -> None:
    ref = JobRef("build-1")
    assert ref.result == "needs.build-1.result"
    assert ref.output("artifact") == "${{ needs.build-1.outputs.artifact }}"


def test_python_values_are_accepted() -> None:
    class Target(BaseModel):
        bucket: str
        when: datetime

    moment = datetime(2026, 12, 1, 8, tzinfo=UTC)
    wf = Workflow("typed", timeout=timedelta(minutes=30))
    wf.input("target", default=Target(bucket="b", when=moment))
    wf.input("token", required=True)
    first = wf.job(
        "first",
        uses="s3_put",
        with_=Target(bucket="b", when=moment),
        timeout=timedelta(seconds=90),
        retry=RetryPolicy(max_attempts=4, backoff=Backoff.LINEAR, delay=2.0, max_delay=5.0),
        at=moment,
    )
    wf.job("second", run="echo ${{ inputs.token }}", needs=first, retry=3, delay=0.5)
    definition = wf.build()
    assert definition.timeout == 1800.0
    assert definition.inputs["target"].default == {"bucket": "b", "when": "2026-12-01T08:00:00Z"}
    assert definition.inputs["token"].required is True
    job = definition.jobs["first"]
    assert job.with_ == {"bucket": "b", "when": "2026-12-01T08:00:00Z"}
    assert job.timeout == 90.0
    assert job.retry == RetryPolicy(
        max_attempts=4, backoff=Backoff.LINEAR, delay=2.0, max_delay=5.0
    )
    assert job.at == moment
    assert definition.jobs["second"].retry == RetryPolicy(max_attempts=3)
    assert definition.jobs["second"].delay == 0.5


def test_input_returns_its_template() -> None:
    wf = Workflow("wf")
    version = wf.input("version", default="1.0")
    wf.job("a", run=f"echo {version}")
    assert wf.build().jobs["a"].run == "echo ${{ inputs.version }}"


def test_retry_policy_without_backoff_round_trips() -> None:
    wf = Workflow("wf")
    wf.job("a", run="x", retry=RetryPolicy(max_attempts=2))
    assert wf.build().jobs["a"].retry == RetryPolicy(max_attempts=2)


def test_retry_to_dict() -> None:
    assert Retry(max_attempts=2, delay=timedelta(seconds=1)).to_dict() == {
        "max_attempts": 2,
        "delay": 1.0,
    }
    assert Retry(backoff=Backoff.FIXED, delay="1s").to_dict()["backoff"] == "fixed"


# --- sub-workflows and loops ----------------------------------------------------------------------


def test_the_builder_makes_the_example_parent_and_loop_as_the_yaml_files_do() -> None:
    from pathlib import Path

    from actors.definitions import load_workflow_file
    from sdk.builder import Input, Loop, Workflow

    examples = Path(__file__).parents[2] / "examples"
    child = Workflow(
        "child",
        inputs={"who": Input(default="world")},
        outputs={
            "greeting": "${{ needs.greet.outputs.greeting }}",
            "letters": "${{ needs.count.outputs.letters }}",
        },
    )
    greet = child.job("greet", run='echo "::set-output greeting=hello ${{ inputs.who }}"')
    child.job(
        "count",
        needs=[greet],
        run="echo \"::set-output letters=$(printf '%s' '"
        + greet.output("greeting")
        + "' | wc -c | tr -d ' ')\"",
    )
    from_yaml = load_workflow_file(examples / "parent.yaml")
    parent = Workflow("parent", outputs={"greeting": "${{ needs.child.outputs.greeting }}"})
    prepare = parent.job("prepare", run='echo "::set-output who=jetwork"')
    sub = parent.job(
        "child",
        needs=[prepare],
        workflow=examples / "child.yaml",
        with_={"who": prepare.output("who")},
        retry=2,
    )
    parent.job(
        "report",
        needs=[sub],
        run=f"echo \"the child said '{sub.output('greeting')}' ({sub.output('letters')} letters)\"",
    )
    built = parent.build()
    assert built.jobs == from_yaml.jobs | {
        "child": from_yaml.jobs["child"].model_copy(
            update={"workflow": str(examples / "child.yaml")}
        )
    }
    assert built.workflows[str(examples / "child.yaml")] == from_yaml.workflows["./child.yaml"]
    assert child.build() == from_yaml.workflows["./child.yaml"]

    loop = Workflow(
        "loop", inputs={"rounds": 3}, outputs={"iterations": "${{ needs.poll.outputs.seen }}"}
    )
    poll = loop.job(
        "poll",
        loop=Loop(until="${{ outputs.done == 'true' }}", max_iterations=20),
        run=(
            f'echo "iteration {Loop.ITERATION}"; '
            f"if [ {Loop.ITERATION} -ge ${{{{ inputs.rounds }}}} ]; "
            'then echo "::set-output done=true"; else echo "::set-output done=false"; fi; '
            f'echo "::set-output seen={Loop.ITERATION}"'
        ),
    )
    loop.job("after", needs=[poll], run=f'echo "done after {poll.output("seen")} iterations"')
    assert loop.build() == load_workflow_file(examples / "loop.yaml")


def test_a_sub_workflow_built_in_python_is_embedded_by_its_name() -> None:
    from sdk.builder import Workflow

    child = Workflow("child")
    child.job("a", run="true")
    parent = Workflow("parent")
    parent.job("sub", workflow=child)
    built = parent.build()
    assert built.jobs["sub"].workflow == "child"
    assert built.workflows["child"] == child.build()
