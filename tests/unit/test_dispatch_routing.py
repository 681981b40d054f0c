"""Label routing (design A): requirement sets, tokens, consumer names, who serves what."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import subjects
from events.catalog import JobQueued, JobSpec
from events.dispatch import (
    InvalidDispatch,
    LabelSet,
    capabilities,
    consumer_name,
    labelset_token,
    parse_token,
    requirement_set,
    serves,
)
from events.memory_store import matches
from events.schedules import schedule_time
from events.store import ActorRef
from events.subjects import is_valid_token

names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=1,
    max_size=12,
)
label_sets = st.frozensets(names, max_size=6)


def test_requirements_are_labels_plus_the_handler() -> None:
    assert requirement_set(["linux", "docker"]) == {"linux", "docker"}
    assert requirement_set(["gpu"], "resize") == {"gpu", "@resize"}
    assert requirement_set([], None) == frozenset()


def test_invalid_labels_and_handler_names_are_refused() -> None:
    with pytest.raises(ValueError, match="label"):
        requirement_set(["linux.x"])
    with pytest.raises(ValueError, match="handler name"):
        requirement_set([], "re*size")


def test_tokens_are_sorted_and_the_empty_set_has_its_own() -> None:
    assert labelset_token({"linux", "docker"}) == "docker+linux"
    assert labelset_token({"gpu", "@resize"}) == "@resize+gpu"
    assert labelset_token(set()) == "~"


@given(label_sets, st.one_of(st.none(), names))
def test_token_round_trips_and_ignores_order(labels: frozenset[str], uses: str | None) -> None:
    reqs = requirement_set(sorted(labels, reverse=True), uses)
    token = labelset_token(reqs)
    assert token == labelset_token(list(reqs))
    assert parse_token(token) == reqs
    assert "." not in token and "*" not in token and ">" not in token and " " not in token


@given(label_sets)
def test_consumer_names_are_safe_and_stable(reqs: frozenset[str]) -> None:
    token = labelset_token(reqs)
    name = consumer_name(token)
    assert re.fullmatch(r"ls-[0-9a-f]{16}", name)
    assert is_valid_token(name)  # also a valid KV key and consumer name
    assert name == consumer_name(labelset_token(set(reqs)))


def test_different_label_sets_get_different_consumers() -> None:
    tokens = {labelset_token(s) for s in ({"a"}, {"b"}, {"a", "b"}, set(), {"@a"})}
    assert len({consumer_name(t) for t in tokens}) == len(tokens)


@given(label_sets, label_sets)
def test_a_worker_serves_exactly_the_subsets_of_its_capabilities(
    caps: frozenset[str], reqs: frozenset[str]
) -> None:
    assert serves(caps, reqs) == all(r in caps for r in reqs)
    assert serves(caps, frozenset())  # a job without labels runs anywhere
    assert serves(caps, caps)


@given(label_sets, label_sets, label_sets)
def test_serving_two_sets_means_serving_their_union(
    caps: frozenset[str], a: frozenset[str], b: frozenset[str]
) -> None:
    assert (serves(caps, a) and serves(caps, b)) == serves(caps, a | b)


def test_handler_jobs_reach_only_workers_with_the_handler() -> None:
    job = requirement_set(["linux"], "resize")
    assert serves(capabilities({"linux"}, ["resize", "thumb"]), job)
    assert not serves(capabilities({"linux"}, ["thumb"]), job)
    assert not serves(capabilities({"linux", "@resize"}, []), frozenset({"@thumb"}))
    # a handler is not a label: a label named like a handler does not satisfy a `uses:`
    assert not serves(capabilities({"linux", "resize"}, []), job)


def test_schedules_are_exact_to_the_millisecond_and_never_fire_before_not_before() -> None:
    at = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert schedule_time(at) == "2030-01-01T12:00:00.000Z"
    assert schedule_time(at.replace(microsecond=200_000)) == "2030-01-01T12:00:00.200Z"
    # A sub-millisecond rest goes up, never down: a job is never claimable before it is due.
    assert schedule_time(at.replace(microsecond=200_001)) == "2030-01-01T12:00:00.201Z"
    assert schedule_time(at.replace(microsecond=999_999)) == "2030-01-01T12:00:01.000Z"
    paris = timezone(timedelta(hours=1))
    assert schedule_time(datetime(2030, 1, 1, 13, 0, 0, tzinfo=paris)) == "2030-01-01T12:00:00.000Z"
    # What nats-server parses (Go's time.RFC3339 takes fractional seconds) reads back the same.
    parsed = datetime.fromisoformat(schedule_time(at.replace(microsecond=123_400)))
    assert parsed == at.replace(microsecond=124_000)


def _queued(wf: str = "wf1", job: str = "build", **spec: object) -> JobQueued:
    return JobQueued(
        workflow_id=wf,
        job=job,
        attempt=1,
        spec=JobSpec(**spec),  # type: ignore[arg-type]
        queued_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def test_a_queued_job_is_appended_on_its_label_set_subject() -> None:
    queued = _queued(uses="resize", labels=("gpu", "linux"))
    p = subjects.partition_of("wf1")
    assert queued.labelset_token == "@resize+gpu+linux"
    assert queued.subject() == f"evt.{p}.wf1.job.build.JobQueued.@resize+gpu+linux"
    assert _queued(run="true").subject() == f"evt.{p}.wf1.job.build.JobQueued.~"


def test_a_label_set_consumer_receives_exactly_its_queued_jobs() -> None:
    labelset = LabelSet.of({"linux", "@resize"})
    mine = _queued(uses="resize", labels=("linux",)).subject()
    other = _queued(labels=("linux",)).subject()
    assert matches(labelset.subject, mine)
    assert not matches(labelset.subject, other)
    # every partition, every workflow, every job
    assert matches(
        labelset.subject,
        _queued(wf="wf-other", job="x", uses="resize", labels=("linux",)).subject(),
    )


def test_a_queued_job_belongs_to_its_job_actor() -> None:
    queued = _queued(labels=("linux",))
    actor = subjects.actor_filter_of(queued.subject())
    assert actor == subjects.job_actor_filter("wf1", "build")
    assert ActorRef(actor).owns(queued.subject())
    assert not ActorRef(subjects.job_actor_filter("wf1", "buil")).owns(queued.subject())


def test_label_set_entries_must_match_their_token() -> None:
    labelset = LabelSet.of({"linux", "@resize"})
    assert labelset.token == "@resize+linux"
    assert LabelSet.decode(labelset.encode()) == labelset
    with pytest.raises(InvalidDispatch, match="does not match"):
        LabelSet.decode(b'{"token": "linux", "requirements": ["gpu"]}')
