"""Rate limits: the job field's validation (located problems), windows and counter keys, and
which limits apply to a job (its own and an operator's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from actors.definitions import parse_workflow
from events.catalog import JobSpec
from events.definition import RateLimit
from events.errors import InvalidWorkflow
from sdk.worker.rate_limits import (
    LimitRecord,
    RateLimiter,
    counter_key,
    limit_key,
    limited_as,
    window_of,
)


def problems_with(rate_limit: Any) -> list[str]:
    raw = {"name": "w", "jobs": {"a": {"run": "true", "rate_limit": rate_limit}}}
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(raw)
    return caught.value.problems


def test_a_rate_limit_is_read_into_the_definition() -> None:
    raw = {
        "name": "w",
        "jobs": {"a": {"uses": "charge", "rate_limit": {"limit": 100, "per": "1m"}}},
    }
    assert parse_workflow(raw).jobs["a"].rate_limit == RateLimit(limit=100, per=60.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10/s", "jobs.a.rate_limit: expected a mapping {limit, per}"),
        ({"limit": 0, "per": "1s"}, "jobs.a.rate_limit.limit: must be a whole number >= 1"),
        ({"limit": True, "per": "1s"}, "jobs.a.rate_limit.limit: must be a whole number >= 1"),
        ({"limit": 3}, "jobs.a.rate_limit.per: missing"),
        ({"limit": 3, "per": "2d"}, "jobs.a.rate_limit.per: at most 1d"),
        ({"limit": 3, "per": "soon"}, "jobs.a.rate_limit.per: invalid duration"),
        ({"limit": 3, "per": "1s", "burst": 2}, "jobs.a.rate_limit.burst: unknown field"),
    ],
)
def test_a_bad_rate_limit_is_a_located_problem(value: Any, expected: str) -> None:
    problems = problems_with(value)
    assert any(p.startswith(expected) for p in problems), problems


def test_windows_are_aligned_on_the_epoch_and_keyed_by_their_length() -> None:
    assert window_of(119.999, 60) == 1 and window_of(120.0, 60) == 2
    assert counter_key("handler", "charge", 60.0, 2) == "handler.charge.60000ms.2"
    assert counter_key("labels", "gpu", 0.5, 7) == "labels.gpu.500ms.7"


def test_a_job_counts_against_its_handler_else_its_label_set() -> None:
    assert limited_as(JobSpec(uses="charge", labels=("eu",))) == ("handler", "charge")
    kind, token = limited_as(JobSpec(run="true", labels=("gpu", "eu")))
    assert kind == "labels" and token == limited_as(JobSpec(run="x", labels=("eu", "gpu")))[1]


def test_the_jobs_own_limit_and_the_operators_both_apply() -> None:
    limiter = RateLimiter()
    own = RateLimit(limit=10, per=1)
    spec = JobSpec(uses="charge", rate_limit=own)
    assert limiter.limits_for(spec) == [own]
    operator = LimitRecord(limit=2, per=60, at=datetime.now(UTC))
    limiter.record(limit_key("handler", "charge"), operator.model_dump_json().encode())
    assert limiter.limits_for(spec) == [own, RateLimit(limit=2, per=60)]
    assert limiter.limits_for(JobSpec(uses="other")) == []
    limiter.record(limit_key("handler", "charge"), None)  # lifted
    assert limiter.limits_for(spec) == [own]


def test_an_unreadable_operator_limit_is_ignored_not_fatal() -> None:
    limiter = RateLimiter()
    limiter.record(limit_key("handler", "charge"), b"{not json")
    assert limiter.limits_for(JobSpec(uses="charge")) == []


def test_the_builder_writes_the_same_rate_limit_as_yaml() -> None:
    from sdk.builder import Workflow

    wf = Workflow("w")
    wf.job("a", uses="charge", rate_limit=RateLimit(limit=100, per=60))
    assert wf.build().jobs["a"].rate_limit == RateLimit(limit=100, per=60)
    assert wf.to_dict()["jobs"]["a"]["rate_limit"] == {"limit": 100, "per": 60.0}
