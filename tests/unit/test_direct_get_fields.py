"""A direct get's reply read without parsing every header gives what a full parse gives."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from events.direct_get import _fields_found, parse_nats_time, stored_message
from events.nats_speedups import process_headers

_NAMES = st.sampled_from(
    [
        "Nats-Msg-Id",
        "Nats-Subject",
        "Nats-Sequence",
        "Nats-Time-Stamp",
        "Nats-Expected-Last-Subject-Sequence",
        "Nats-Num-Pending",
        "X",
        " Nats-Msg-Id",
        "Nats-Msg-Id ",
    ]
)
_ASCII = st.characters(max_codepoint=127)
_VALUES = st.one_of(st.text(_ASCII, max_size=12), st.from_regex(r"\A[0-9]{1,6}\Z"))
_STAMP = "2026-12-07T21:41:07.510267573Z"


def server_tail(subject: str, seq: int, *, batched: bool) -> str:
    """The headers nats-server adds to a direct get's reply, as it writes them."""
    tail = f"Nats-Stream: JW_EVENTS\r\nNats-Subject: {subject}\r\nNats-Sequence: {seq}\r\n"
    tail += f"Nats-Time-Stamp: {_STAMP}\r\n"
    if batched:
        tail += "Nats-Num-Pending: 3\r\nNats-Last-Sequence: 4\r\n"
    return tail + "\r\n"


def parsed_fields(block: bytes) -> tuple[int, str, datetime, str | None]:
    headers = process_headers(block) or {}
    return (
        int(headers["Nats-Sequence"]),
        headers["Nats-Subject"],
        parse_nats_time(headers.get("Nats-Time-Stamp", "")),
        headers.get("Nats-Msg-Id"),
    )


def read_fields(block: bytes) -> tuple[int, str, datetime, str | None]:
    message = stored_message(b"{}", block)
    return message.seq, message.subject, message.time, message.msg_id


def test_a_usual_reply_is_read_without_a_full_parse_and_as_a_parse_reads_it() -> None:
    block = (
        "NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: 0\r\nNats-Msg-Id: c1:0\r\n"
        + server_tail("evt.3.wf.job.a.JobQueued", 17, batched=True)
    ).encode()
    assert _fields_found(block) is not None
    expected = (17, "evt.3.wf.job.a.JobQueued", parse_nats_time(_STAMP), "c1:0")
    assert read_fields(block) == parsed_fields(block) == expected
    message = stored_message(b"{}", block)
    assert message.headers == process_headers(block)


_LINES = st.lists(st.tuples(_NAMES, _VALUES), max_size=6)


@given(
    _LINES,
    st.text(_ASCII, min_size=1, max_size=20),
    st.integers(min_value=1, max_value=10**9),
    st.booleans(),
    st.sampled_from([": ", ":", ":  ", " : "]),
    st.one_of(st.just([]), _LINES),
)
@example([("Nats-Sequence", "5")], "s", 9, False, ": ", [])  # a stored header the server's beats
@example([("Nats-Msg-Id", "a"), (" Nats-Msg-Id", "b")], "s", 9, False, ": ", [])  # named twice
@example([], "s", 9, False, ": ", [("Nats-Sequence", "5")])  # named again after the server's
def test_stored_headers_of_any_kind_read_as_a_parse_reads_them(
    stored: list[tuple[str, str]],
    subject: str,
    seq: int,
    batched: bool,
    colon: str,
    after: list[tuple[str, str]],
) -> None:
    lines = "".join(f"{name}{colon}{value}\r\n" for name, value in stored)
    tail = server_tail(subject, seq, batched=batched)
    if after:  # lines after the server's (no server writes that: the reader must parse then)
        tail = tail[:-2] + "".join(f"{name}{colon}{value}\r\n" for name, value in after) + "\r\n"
    block = ("NATS/1.0\r\n" + lines + tail).encode()
    try:
        expected = parsed_fields(block)
    except (KeyError, ValueError):
        return  # not a message a parse can read either (a subject of spaces...)
    assert read_fields(block) == expected


@given(st.binary(max_size=200), st.binary(max_size=80))
def test_any_block_the_shortcut_reads_reads_as_a_parse(head: bytes, tail: bytes) -> None:
    blocks = [
        head,
        b"NATS/1.0\r\n" + head + server_tail("s", 3, batched=False).encode(),
        b"NATS/1.0\r\n" + head + b"\r\nNats-Subject: s\r\n" + tail,
    ]
    for block in blocks:
        found = _fields_found(block)
        if found is None:
            continue
        seq, subject, stamp, msg_id = found
        assert (seq, subject, parse_nats_time(stamp), msg_id) == parsed_fields(block)


def test_a_reply_without_a_sequence_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="Nats-Sequence"):
        stored_message(b"{}", b"NATS/1.0\r\nNats-Subject: s\r\n\r\n")
