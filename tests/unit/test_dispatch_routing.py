"""Label routing (design A): requirement sets, tokens, consumer names, who serves what."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.catalog import JobQueued, JobSpec
from events.dispatch import (
    DispatchMessage,
    InvalidDispatch,
    LabelSet,
    capabilities,
    consumer_name,
    labelset_token,
    parse_token,
    requirement_set,
    schedule_time,
    serves,
)
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


def test_dispatch_message_round_trips() -> None:
    message = DispatchMessage(workflow_id="wf1", job="build", attempt=2)
    assert DispatchMessage.decode(message.encode()) == message
    assert message.msg_id == "wf1.build.2"


def _queued(wf: str = "wf1", job: str = "build", attempt: int = 1) -> JobQueued:
    spec = JobSpec(uses="resize", with_={"size": 3})
    return JobQueued(
        workflow_id=wf,
        job=job,
        attempt=attempt,
        spec=spec,
        queued_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def test_a_claim_hint_round_trips_with_the_event_as_the_store_writes_it() -> None:
    message = DispatchMessage(
        workflow_id="wf1", job="build", attempt=1, queued=_queued(), queued_seq=42
    )
    data = message.encode()
    assert b'"with":{"size":3}' in data  # aliases, as in the log
    decoded = DispatchMessage.decode(data)
    assert decoded == message
    assert decoded.hint() == (_queued(), 42)


@pytest.mark.parametrize(
    ("attempt", "queued"),
    [
        (2, _queued(attempt=2)),  # retries carry no hint: their state needs the whole history
        (1, _queued(job="other")),  # about another job
        (1, _queued(wf="wf2")),
    ],
)
def test_a_claim_hint_about_anything_else_is_ignored(attempt: int, queued: JobQueued) -> None:
    message = DispatchMessage(
        workflow_id="wf1", job="build", attempt=attempt, queued=queued, queued_seq=7
    )
    assert message.hint() is None


def test_without_a_hint_the_message_stays_small() -> None:
    assert DispatchMessage(workflow_id="w", job="j", attempt=1).encode() == (
        b'{"workflow_id":"w","job":"j","attempt":1}'
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b'{"workflow_id": "wf"}', b'{"workflow_id":"w","job":"j","attempt":0}'],
)
def test_malformed_dispatch_messages_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidDispatch):
        DispatchMessage.decode(data)


def test_label_set_entries_must_match_their_token() -> None:
    labelset = LabelSet.of({"linux", "@resize"})
    assert labelset.token == "@resize+linux"
    assert LabelSet.decode(labelset.encode()) == labelset
    with pytest.raises(InvalidDispatch, match="does not match"):
        LabelSet.decode(b'{"token": "linux", "requirements": ["gpu"]}')
