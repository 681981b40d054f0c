"""The http step's pure parts: validation, rendering, the allow-list, secrets, the executor
against an in-memory transport (the real server is in tests/integration/test_http_step.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from actors.dag import render_spec
from actors.definitions import ExpressionContext, ExpressionError, parse_workflow
from actors.definitions.http_step import check_until, poll_done
from events.catalog import JobSpec
from events.errors import InvalidWorkflow
from events.http_step import HTTP_HANDLER, HttpPoll, HttpStep
from sdk.worker.executors import Failed, Parked, Succeeded
from sdk.worker.executors.http_step import (
    HttpExecutor,
    StepRefused,
    allowed_hosts,
    host_allowed,
    resolve_headers,
)
from sdk.worker.job_context import JobContext


def definition(http: Any, **job: Any) -> dict[str, Any]:
    return {"name": "wf", "inputs": {"id": {"default": "7"}}, "jobs": {"a": {"http": http, **job}}}


def problems_of(raw: Any) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(raw)
    return caught.value.problems


# --- validation -------------------------------------------------------------------------------


def test_a_full_step_is_normalised() -> None:
    step = (
        parse_workflow(
            definition(
                {
                    "url": "https://api.example.com/orders/${{ inputs.id }}",
                    "method": "post",
                    "headers": {"Authorization": "Bearer ${{ secrets.TOKEN }}", "X-Try": 2},
                    "body": {"id": "${{ inputs.id }}", "n": [1, 2]},
                    "timeout": "5s",
                    "expect_status": 201,
                    "poll": {"interval": "2s", "until": "response.status == 201", "max_polls": 3},
                }
            )
        )
        .jobs["a"]
        .http
    )
    assert step == HttpStep(
        url="https://api.example.com/orders/${{ inputs.id }}",
        method="POST",
        headers={"Authorization": "Bearer ${{ secrets.TOKEN }}", "X-Try": "2"},
        body={"id": "${{ inputs.id }}", "n": [1, 2]},
        timeout=5.0,
        expect_status=(201,),
        poll=HttpPoll(interval=2.0, until="response.status == 201", max_polls=3),
    )


def test_a_step_beside_a_command_or_labels_is_refused_where_it_is() -> None:
    problems = problems_of(
        definition({"url": "http://x"}, run="true", uses="h", labels=["gpu"], **{"with": {}})
    )
    assert problems == [
        "jobs.a.run: an http step makes a request, it runs no command: drop run",
        "jobs.a.uses: an http step runs in jetwork server, not in a handler: drop uses",
        "jobs.a.with: with passes arguments to a uses handler; an http step has none",
        "jobs.a.labels: an http step runs in jetwork server, not on a worker: labels do not apply",
    ]


@pytest.mark.parametrize(
    ("http", "problem"),
    [
        ("https://x", "jobs.a.http: expected a mapping with url (and method, headers, body …), "
         "got text"),
        ({"url": "file:///etc/passwd"}, "jobs.a.http.url: 'file:///etc/passwd': only http and "
         "https URLs are allowed (scheme 'file')"),
        ({"url": "http:///path"}, "jobs.a.http.url: 'http:///path' has no host"),
        ({"url": "http://x", "expect_status": []}, "jobs.a.http.expect_status: is empty: list the "
         "statuses that mean success, e.g. [200, 201]"),
        ({"url": "http://x", "headers": {"bad name": "v"}}, "jobs.a.http.headers['bad name']: "
         "'bad name' is not a valid header name"),
        ({"url": "http://x", "poll": {"interval": "1s", "until": "true"}}, "jobs.a.http.poll."
         "until: never reads response: the condition would never change between polls"),
        ({"url": "http://x", "poll": {"interval": "1s", "until": "response.status =="}},
         "jobs.a.http.poll.until: expected a value, found the end of the expression (column 19 "
         "of 'response.status ==')"),
        ({"url": "http://x", "poll": {"interval": "1s"}}, "jobs.a.http.poll: missing until: the "
         "condition over response that ends the polling"),
    ],
)  # fmt: skip
def test_bad_steps_are_located(http: Any, problem: str) -> None:
    assert problems_of(definition(http)) == [problem]


def test_response_is_readable_only_in_poll_until() -> None:
    raw = {"name": "wf", "jobs": {"a": {"run": "echo ${{ response.body }}"}}}
    assert problems_of(raw)[0].startswith("jobs.a.run: unknown name 'response'")


def test_until_problems() -> None:
    assert check_until("fromJSON(response.body).state == 'done'") == []
    assert check_until("needs.a.result == 'success' && response.status == 200") == [
        "until reads only response (status, body, headers), not needs"
    ]


# --- rendering ---------------------------------------------------------------------------------


def test_the_engine_renders_templates_and_keeps_secrets_unresolved() -> None:
    job = parse_workflow(
        definition(
            {
                "url": "https://api.example.com/${{ inputs.id }}",
                "headers": {"Authorization": "${{ inputs.id }}:${{secrets.TOKEN}}!"},
                "body": ["${{ inputs.id }}", 3],
            }
        )
    ).jobs["a"]
    spec = render_spec(job, ExpressionContext(needs={}, inputs={"id": "7"}), {})
    assert spec.uses == HTTP_HANDLER
    assert spec.http is not None
    assert spec.http.url == "https://api.example.com/7"
    assert spec.http.headers == {"Authorization": "7:${{secrets.TOKEN}}!"}
    assert spec.http.body == ["7", 3]


# --- the worker's side -------------------------------------------------------------------------


def test_the_allow_list() -> None:
    allow = allowed_hosts({"JETWORK_HTTP_STEP_ALLOW": " API.example.com, *.example.org ,"})
    assert allow == ("api.example.com", "*.example.org")
    assert host_allowed("api.example.com", allow)
    assert host_allowed("a.b.example.org", allow)
    assert not host_allowed("example.org", allow)
    assert not host_allowed("evil-example.com", allow)
    assert allowed_hosts({}) is None and host_allowed("anything", None)


def test_secrets_come_from_the_environment_but_never_jetworks_own_credentials() -> None:
    environ = {"TOKEN": "t0k", "JETWORK_NATS_PASSWORD": "pw"}
    assert resolve_headers({"A": "Bearer ${{ secrets.TOKEN }}"}, environ) == {"A": "Bearer t0k"}
    with pytest.raises(StepRefused, match="secret MISSING is not set"):
        resolve_headers({"A": "${{ secrets.MISSING }}"}, environ)
    with pytest.raises(StepRefused, match="secret JETWORK_NATS_PASSWORD is not set"):
        resolve_headers({"A": "${{ secrets.JETWORK_NATS_PASSWORD }}"}, environ)


def test_poll_done_reads_the_response() -> None:
    until = "fromJSON(response.body).state == 'done' && response.headers['x-n'] == '2'"
    response = {"status": 200, "body": '{"state": "done"}', "headers": {"x-n": "2"}}
    assert poll_done(until, response)
    assert not poll_done(until, {**response, "body": '{"state": "running"}'})
    with pytest.raises(ExpressionError):
        poll_done(until, {**response, "body": "not json"})


@pytest.fixture
async def ctx() -> JobContext:
    return JobContext(workflow_id="wf1", job="call", worker_id="w-http")


def spec_of(**http: Any) -> JobSpec:
    return JobSpec(uses=HTTP_HANDLER, http=HttpStep(**http))


async def test_the_executor_sends_the_secret_and_outputs_status_and_body(
    ctx: JobContext,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    executor = HttpExecutor(environ={"TOKEN": "t0k"}, transport=httpx.MockTransport(answer))
    spec = spec_of(
        url="https://api.example.com/x",
        method="POST",
        headers={"Authorization": "Bearer ${{ secrets.TOKEN }}"},
        body={"a": 1},
        expect_status=(201,),
    )
    result = await executor.execute(spec, ctx)
    await executor.aclose()
    assert result == Succeeded(outputs={"status": "201", "body": '{"ok":true}'})
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert seen[0].content == b'{"a":1}'


async def test_the_executor_refuses_before_any_request(ctx: JobContext) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be made")

    executor = HttpExecutor(
        environ={"JETWORK_HTTP_STEP_ALLOW": "api.example.com"},
        transport=httpx.MockTransport(answer),
    )
    result = await executor.execute(spec_of(url="https://other.example.com/"), ctx)
    assert result == Failed(
        "host other.example.com is not allowed for http steps: JETWORK_HTTP_STEP_ALLOW on "
        "jetwork server allows api.example.com",
        retryable=False,
    )
    result = await executor.execute(spec_of(url="gopher://api.example.com/"), ctx)
    await executor.aclose()
    assert isinstance(result, Failed) and "only http and https" in result.error


async def test_a_body_over_the_output_limit_fails_without_retry(ctx: JobContext) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, text="x" * 2000))
    executor = HttpExecutor(environ={}, max_output_bytes=1000, transport=transport)
    result = await executor.execute(spec_of(url="https://api.example.com/"), ctx)
    await executor.aclose()
    assert isinstance(result, Failed) and not result.retryable
    assert "over the worker's max_output_bytes of 1000" in result.error


async def test_a_poll_not_done_parks_the_job_and_the_next_run_makes_the_next_request() -> None:
    states = iter(["running", "running", "done"])
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"state": next(states)}))
    executor = HttpExecutor(environ={}, transport=transport)
    until = "${{ fromJSON(response.body).state == 'done' }}"
    spec = spec_of(url="https://api.example.com/job", poll=HttpPoll(interval=5, until=until))
    first = await executor.execute(spec, JobContext(workflow_id="wf1", job="call"))
    assert first == Parked(after=5, outputs={"status": "200", "polls": "1"})
    second = await executor.execute(spec, JobContext(workflow_id="wf1", job="call", poll_count=1))
    assert second == Parked(after=5, outputs={"status": "200", "polls": "2"})
    third = await executor.execute(spec, JobContext(workflow_id="wf1", job="call", poll_count=2))
    await executor.aclose()
    assert third == Succeeded(outputs={"status": "200", "body": '{"state":"done"}', "polls": "3"})


async def test_the_last_allowed_poll_fails_instead_of_parking() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"state": "running"}))
    executor = HttpExecutor(environ={}, transport=transport)
    poll = HttpPoll(interval=5, until="${{ response.status == 201 }}", max_polls=3)
    spec = spec_of(url="https://api.example.com/job", poll=poll)
    result = await executor.execute(spec, JobContext(workflow_id="wf1", job="call", poll_count=2))
    await executor.aclose()
    assert isinstance(result, Failed) and result.retryable
    assert result.error.startswith("polled 3 times")


def test_a_start_request_carries_the_step() -> None:
    """What the CLI and the client send (``definition_mapping``) parses back to the same step."""
    from pathlib import Path

    from actors.definitions import load_workflow_file
    from actors.definitions.mapping import definition_mapping

    definition = load_workflow_file(Path(__file__).parents[2] / "examples" / "http.yaml")
    assert parse_workflow(definition_mapping(definition)) == definition
