"""The faster header parser behaves exactly as nats-py's own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from events.nats_speedups import original_parse_header_lines, parse_header_lines

SAMPLES = [
    b"Nats-Msg-Id: abc:0\r\nNats-Expected-Last-Subject-Sequence: 12\r\n\r\n",
    b"Name:Value\r\nName2:\tValue2\r\n",
    b"Bad Name: x\r\nGood: y\r\n",
    b"\xffbad: x\r\nok: \xff\xfe\r\n",
    b"no-colon-line\r\n: empty-name\r\n",
    b"Sep\x1carated: x\r\n",
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
