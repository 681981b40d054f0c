"""Where ``jetwork logs`` puts its ``── attempt N ──`` headers: one per claim, in log order."""

from __future__ import annotations

from datetime import UTC, datetime

from events.catalog import JobStarted
from sdk.cli.logs import header, render
from sdk.client.logs import Claim, LogLine, _ClaimOrder

T = datetime(2026, 1, 1, tzinfo=UTC)


def started(attempt: int, epoch: int, worker: str) -> JobStarted:
    return JobStarted(workflow_id="wf", job="j", attempt=attempt, epoch=epoch, worker_id=worker,
                      lease_ttl=30.0, started_at=T)  # fmt: skip


def line(attempt: int, epoch: int, text: str, stream: str = "stdout") -> LogLine:
    return LogLine(workflow_id="wf", job="j", attempt=attempt, seq=1, stream=stream, line=text,
                   time=T, epoch=epoch, worker_id="w")  # fmt: skip


def merged(claims: list[JobStarted], lines: list[LogLine]) -> list[str]:
    order = _ClaimOrder()
    order.learn(claims)
    out: list[str] = []
    for entry in lines:
        out += [header(c) for c in order.before(entry)]
        out.append(render(entry, timestamps=False))
    out += [header(c) for c in order.rest()]
    return out


def test_every_attempt_gets_a_header_also_one_that_printed_nothing() -> None:
    claims = [started(1, 1, "w-a"), started(2, 2, "w-a"), started(3, 3, "w-b")]
    assert merged(claims, [line(1, 1, "one"), line(3, 3, "three")]) == [
        "── attempt 1 ──",
        "one",
        "── attempt 2 ──",
        "── attempt 3 ──",
        "three",
    ]


def test_a_lease_taken_over_is_a_second_claim_of_the_attempt() -> None:
    claims = [started(1, 1, "w-a"), started(1, 2, "w-b")]
    lines = [line(1, 1, "from a"), line(1, 2, "from b"), line(1, 1, "late line of a")]
    assert merged(claims, lines) == [
        "── attempt 1 ──",
        "from a",
        "── attempt 1, claim 2: lease taken over by w-b (epoch 2) ──",
        "from b",
        "── attempt 1, continued (epoch 1) ──",
        "late line of a",
    ]


def test_a_claim_without_lines_at_the_end_still_shows() -> None:
    claims = [started(1, 1, "w-a"), started(2, 2, "w-a")]
    assert merged(claims, [line(1, 1, "x")]) == ["── attempt 1 ──", "x", "── attempt 2 ──"]


def test_lines_whose_claim_is_not_read_yet_name_it_themselves() -> None:
    assert merged([], [line(2, 5, "early")]) == ["── attempt 2 ──", "early"]


def test_stderr_is_marked() -> None:
    assert render(line(1, 1, "oops", "stderr"), timestamps=False) == "\x1b[31m[stderr] \x1b[0moops"
    assert Claim(attempt=1, epoch=1, worker_id="w").claim == 1
