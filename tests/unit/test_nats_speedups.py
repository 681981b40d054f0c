"""The faster header and metadata parsers behave exactly as nats-py's own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.errors import BadHeaderError, NotJSMessageError

from events.inline_delivery import header_block
from events.nats_speedups import (
    encode_headers,
    hpub_command,
    metadata_from_reply,
    original_metadata_from_reply,
    original_parse_header_lines,
    parse_header_lines,
    process_headers,
)

SAMPLES = [
    b"Nats-Msg-Id: abc:0\r\nNats-Expected-Last-Subject-Sequence: 12\r\n\r\n",
    b"Name:Value\r\nName2:\tValue2\r\n",
    b"Bad Name: x\r\nGood: y\r\n",
    b"\xffbad: x\r\nok: \xff\xfe\r\n",
    b"no-colon-line\r\n: empty-name\r\n",
    b"Sep\x1carated: x\r\n",
    b"\x1cEdge\x0b: \x1fvalue\x0c\r\n\x0bName: v\r\n",
    b"",
]


def test_samples_parse_the_same() -> None:
    for raw in SAMPLES:
        assert parse_header_lines(raw) == original_parse_header_lines(raw)


@given(st.binary(max_size=300))
def test_any_bytes_parse_the_same(raw: bytes) -> None:
    assert parse_header_lines(raw) == original_parse_header_lines(raw)


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=8))
def test_header_like_blocks_parse_the_same(pairs: list[tuple[str, str]]) -> None:
    raw = b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogatepass") for k, v in pairs)
    assert parse_header_lines(raw) == original_parse_header_lines(raw)


_ASCII = st.characters(max_codepoint=127)


@given(st.lists(st.tuples(st.text(_ASCII, max_size=20), st.text(_ASCII, max_size=40)), max_size=8))
def test_ascii_blocks_with_any_control_characters_parse_the_same(
    pairs: list[tuple[str, str]],
) -> None:
    # The ASCII fast path strips with str methods: \x0b, \x0c and \x1c-\x1f must be treated
    # as bytes.strip() and the original's whitespace check treat them.
    raw = b"".join(f"{k}:{v}\r\n".encode() for k, v in pairs)
    assert parse_header_lines(raw) == original_parse_header_lines(raw)
    assert parse_header_lines(raw) == original_parse_header_lines(raw)  # names now remembered


REPLIES = [
    "$JS.ACK.JW_EVENTS.OC_abcdefgh.1.123456.654321.1733520000123456789.17",  # v1, no domain
    "$JS.ACK.hub.ACCHASH.JW_EVENTS.engine-p3-evt.2.9.8.1733520000123456789.0.rnd",  # v2, domain
    "$JS.ACK._.ACCHASH.JW_EVENTS.engine-p3-evt.2.9.8.1733520000123456789.0",  # v2, "_": none
]


def test_metadata_is_the_same_object_as_nats_pys() -> None:
    for reply in REPLIES:
        fast, original = metadata_from_reply(reply), original_metadata_from_reply(reply)
        assert fast == original and repr(fast) == repr(original) and hash(fast) == hash(original)


def test_metadata_of_a_reply_that_is_not_jetstreams_is_refused_alike() -> None:
    for reply in ["_INBOX.abc", "$JS.ACK.too.few", ""]:
        with pytest.raises(NotJSMessageError):
            metadata_from_reply(reply)
        with pytest.raises(NotJSMessageError):
            original_metadata_from_reply(reply)


async def _nats_py_publish_bytes(headers: dict[str, str]) -> bytes:
    """What nats-py's own publish would write for these headers (its socket left out)."""
    client = Client()
    written: list[bytes] = []

    async def capture(command: bytes, priority: bool = False) -> None:
        written.append(command)

    client._send_command = capture  # type: ignore[method-assign]
    client._flush_queue = None
    await client._send_publish("subj", "reply.1", b"body", 4, headers)
    return written[0]


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=6))
async def test_headers_encode_as_nats_py_encodes_them(headers: dict[str, str]) -> None:
    try:
        expected: bytes | type[Exception] = await _nats_py_publish_bytes(headers)
    except BadHeaderError:
        expected = BadHeaderError
    if expected is BadHeaderError:
        with pytest.raises(BadHeaderError):
            encode_headers(headers)
    else:
        assert hpub_command("subj", "reply.1", encode_headers(headers), b"body") == expected


async def test_usual_headers_encode_as_nats_py_encodes_them() -> None:
    for headers in [
        {"Nats-Msg-Id": "g1:wf-1:wfkey.g1.t0.493", "Nats-Expected-Last-Subject-Sequence": "0"},
        {" Jw-Seq ": " 12 ", "Jw-Status": "line\r\nbreak"},
        {"": "skipped", "A": ""},
    ]:
        assert hpub_command("subj", "reply.1", encode_headers(headers), b"body") == (
            await _nats_py_publish_bytes(headers)
        )


STATUS_SAMPLES = [
    b"NATS/1.0\r\nNats-Sequence: 7\r\nNats-Subject: evt.a\r\n\r\n",
    b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 9\r\n\r\n",
    b"NATS/1.0 404 No Messages\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n",
    b"NATS/1.0 abc\r\n\r\n",
    b"NATS/1.0\r\n\r\n",
    b"",
]


async def test_headers_with_and_without_a_status_are_processed_as_nats_py_does() -> None:
    client = Client()
    for raw in STATUS_SAMPLES:
        assert process_headers(raw) == await client._process_headers(raw), raw


@given(
    st.sampled_from([b"", b" 204", b" 404 No Messages", b" 100 Idle Heartbeat", b" 12x"]),
    st.lists(st.tuples(st.text(_ASCII, max_size=12), st.text(_ASCII, max_size=20)), max_size=4),
)
async def test_any_status_and_header_lines_are_processed_as_nats_py_does(
    status: bytes, pairs: list[tuple[str, str]]
) -> None:
    raw = b"NATS/1.0" + status + b"\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs)
    assert process_headers(raw + b"\r\n") == await Client()._process_headers(raw + b"\r\n")


@given(
    st.dictionaries(
        st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,10}\Z"),
        st.text(_ASCII.filter(lambda c: c not in "\r\n"), max_size=20).map(str.strip),
        max_size=5,
    ),
    st.one_of(st.none(), st.sampled_from(["100", "204", "404", "503"])),
    st.sampled_from(["", "No Messages", "EOB"]),
)
def test_parsed_headers_made_a_block_again_parse_the_same(
    headers: dict[str, str], status: str | None, description: str
) -> None:
    # For a block handler's message that came through nats-py's queue (already parsed). A status
    # with other headers has a description in all nats-py parses (a quirk of its parser).
    given_headers = {k: v for k, v in headers.items() if k not in ("Status", "Description")}
    if status is not None and (description or not given_headers):
        given_headers = {"Status": status, **given_headers}
        if description:
            given_headers["Description"] = description
    block = header_block(given_headers or None) if given_headers else None
    assert process_headers(block) == (given_headers or None)
