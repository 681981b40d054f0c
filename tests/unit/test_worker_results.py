"""What a worker reports for each result, and when it may ack a dispatch (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from actors.commands import CompleteJob, ConfirmCancelled, FailJob
from actors.job import JobState
from events.catalog import JobStatus
from sdk.worker.executors import Abandoned, Cancelled, Failed, Succeeded
from sdk.worker.results import held_by_another, result_command

NOW = datetime(2030, 1, 1, tzinfo=UTC)
IDS = {"workflow_id": "wf", "job": "build", "epoch": 3, "worker_id": "w-1", "now": NOW}


def test_each_result_becomes_its_command() -> None:
    done = result_command(Succeeded(outputs={"v": "1"}, result={"v": 1}), **IDS)
    assert done == CompleteJob(**IDS, outputs={"v": "1"}, result={"v": 1})
    failed = result_command(Failed("boom", retryable=False, timed_out=True), **IDS)
    assert failed == FailJob(**IDS, error="boom", retryable=False, timed_out=True)
    assert result_command(Cancelled("stop"), **IDS) == ConfirmCancelled(**IDS)


def test_an_abandoned_run_is_never_reported() -> None:
    with pytest.raises(ValueError, match="abandoned"):
        result_command(Abandoned(), **IDS)


RUNNING = JobState(
    workflow_id="wf", job="build", status=JobStatus.RUNNING, attempt=1, epoch=2, dispatch_seq=7
)


@pytest.mark.parametrize(
    ("state", "dispatch_seq", "epoch", "held"),
    [
        (RUNNING, 7, 1, True),  # our message, redelivered and claimed by epoch 2
        (RUNNING, 7, None, True),  # a refused (stale) claim of the holder's message
        (RUNNING, 7, 2, False),  # we are the holder
        (RUNNING, 8, 1, False),  # a duplicate dispatch: not the holder's message
        (replace(RUNNING, status=JobStatus.SUCCEEDED), 7, 1, False),  # over: ack freely
        (replace(RUNNING, status=JobStatus.RETRYING), 7, 1, False),
    ],
)
def test_a_message_is_held_by_another_only_while_another_claim_of_it_runs(
    state: JobState, dispatch_seq: int, epoch: int | None, held: bool
) -> None:
    assert held_by_another(state, dispatch_seq, epoch) is held
