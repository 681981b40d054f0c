"""The builder's http step: the same definition as examples/http.yaml, the same problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.definitions import load_workflow_file
from events.errors import InvalidWorkflow
from sdk.builder import Http, Poll, Retry, Workflow

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_builder_equals_the_example_file() -> None:
    wf = Workflow("http-example", inputs={"base": "https://httpbin.org"})
    create = wf.job(
        "create",
        http=Http(
            url="${{ inputs.base }}/anything/orders",
            method="POST",
            headers={"X-Request-Id": "${{ inputs.base }}"},
            body={"item": "book", "quantity": 2},
            timeout="10s",
            expect_status=[200, 201],
        ),
        retry=Retry(max_attempts=3, backoff="exponential", delay="1s"),
    )
    wait = wf.job(
        "wait",
        needs=[create],
        http=Http(
            url="${{ inputs.base }}/get?state=done",
            poll=Poll(
                interval="2s",
                until="${{ fromJSON(response.body).args.state == 'done' }}",
                max_polls=10,
            ),
        ),
    )
    wf.job(
        "report",
        needs=[create, wait],
        run=(
            f'echo "created with status {create.output("status")}"\n'
            'echo "ordered ${{ fromJSON(needs.create.outputs.body).json.quantity }} items"\n'
            f'echo "done after {wait.output("polls")} poll(s)"\n'
        ),
    )
    assert wf.build() == load_workflow_file(EXAMPLES / "http.yaml")


def test_the_builder_reports_the_same_located_problems() -> None:
    wf = Workflow("bad")
    wf.job("call", http=Http(url="ftp://x/y", expect_status=700), labels=["gpu"])
    with pytest.raises(InvalidWorkflow) as caught:
        wf.build()
    assert caught.value.problems == [
        "jobs.call.labels: an http step runs in jetwork server, not on a worker: labels do not "
        "apply",
        "jobs.call.http.url: 'ftp://x/y': only http and https URLs are allowed (scheme 'ftp')",
        "jobs.call.http.expect_status[0]: expected an HTTP status from 100 to 599, got 700",
    ]
