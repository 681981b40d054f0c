"""``--input KEY=VALUE`` parsing and the definition mapping a start request carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from actors.definitions import parse_workflow
from events.errors import InvalidWorkflow
from sdk.builder import Retry, Workflow
from sdk.cli.run import parse_inputs
from sdk.client.definitions import definition_mapping, resolve_definition
from sdk.errors import InvalidArgument


def test_values_that_read_as_json_are_typed_others_are_text() -> None:
    assert parse_inputs(["n=3", "ok=true", "xs=[1, 2]", "v=0.1.0", "who=world", 'q="3"']) == {
        "n": 3,
        "ok": True,
        "xs": [1, 2],
        "v": "0.1.0",
        "who": "world",
        "q": "3",
    }
    assert parse_inputs(["empty=", "eq=a=b", " spaced =x"]) == {
        "empty": "",
        "eq": "a=b",
        "spaced": "x",
    }
    assert parse_inputs([]) == {}


@pytest.mark.parametrize("pair", ["novalue", "=x", " =x"])
def test_a_pair_without_a_key_is_refused(pair: str) -> None:
    with pytest.raises(InvalidArgument, match="expected KEY=VALUE"):
        parse_inputs([pair])


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'who' is given twice"):
        parse_inputs(["who=a", "who=b"])


def test_resolve_refuses_what_is_not_a_workflow() -> None:
    with pytest.raises(TypeError, match="not int"):
        resolve_definition(42)  # type: ignore[arg-type]


durations = st.one_of(
    st.sampled_from(["500ms", "1s", "2m", "1h30m"]),
    st.floats(min_value=0.001, max_value=1e5),
    st.integers(min_value=1, max_value=10**5).map(lambda s: timedelta(seconds=s)),
)
retries = st.one_of(
    st.integers(min_value=1, max_value=5),
    st.builds(
        Retry,
        max_attempts=st.integers(min_value=1, max_value=5),
        backoff=st.sampled_from(["fixed", "exponential", "linear"]),
        delay=durations,
        max_delay=st.none() | durations,
    ),
    st.builds(Retry, max_attempts=st.integers(min_value=1, max_value=5), backoff=st.just("none")),
)
labels = st.lists(st.sampled_from(["linux", "gpu", "arm"]), max_size=2, unique=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    wf = Workflow(
        "w",
        inputs={"a": draw(json_values.filter(lambda v: v is not None)), "b": 1},
        env=draw(st.none() | st.just({"REGION": "eu"})),
        timeout=draw(st.none() | durations),
        dispatch_timeout=draw(st.none() | durations),
    )
    wf.input("req", required=True, description=draw(st.none() | st.just("needed")))
    names: list[str] = []
    for index in range(draw(st.integers(min_value=1, max_value=5))):
        name = f"j{index}"
        upstream = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
        when = draw(st.sampled_from(["delay", "at", None]))
        uses = draw(st.booleans())
        wf.job(
            name,
            run=None if uses else "echo ${{ inputs.b }}",
            uses="handler" if uses else None,
            with_=draw(st.dictionaries(st.sampled_from(["x", "y"]), json_values, max_size=2))
            if uses
            else None,
            labels=draw(labels),
            needs=upstream[:1],
            needs_any=upstream[1:],
            if_=draw(st.sampled_from([None, "always()", "inputs.b > 0"])),
            env=draw(st.none() | st.just({"K": "v"})),
            timeout=draw(st.none() | durations),
            dispatch_timeout=draw(st.none() | durations),
            retry=draw(st.none() | retries),
            on_failure=draw(st.sampled_from([None, "continue", "fail_workflow", "retry_forever"])),
            delay=draw(durations) if when == "delay" else None,
            at=datetime(2030, 1, 1, tzinfo=UTC) if when == "at" else None,
        )
        names.append(name)
    return wf


@settings(max_examples=60, deadline=None)
@given(workflows())
def test_the_mapping_sent_parses_back_to_the_same_definition(wf: Workflow) -> None:
    try:
        definition = wf.build()
    except InvalidWorkflow:  # e.g. a max_delay shorter than the delay: not what is tested here
        assume(False)
        return
    sent: Any = orjson.loads(orjson.dumps(definition_mapping(definition)))
    assert parse_workflow(sent) == definition
