"""jetwork's protocol parser does what nats-py's does, however the bytes are cut."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.protocol.parser import Parser

from events import wire_parser
from events.inline_delivery import _DELIVERY, AS_MSG, AS_RAW

INLINE_SID, RAW_SID, QUEUED_SID = 1, 2, 3


class Recorder(Client):
    """A client that records what the parser hands it instead of talking to a server."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Any, ...]] = []
        for sid in (INLINE_SID, RAW_SID, QUEUED_SID):
            self._subs[sid] = _Sub()  # type: ignore[assignment]  # only the delivery is read
        setattr(self._subs[INLINE_SID], _DELIVERY, (self._inline, AS_MSG))
        setattr(self._subs[RAW_SID], _DELIVERY, (self._raw, AS_RAW))
        self._error_cb = self._record_error

    def _inline(self, msg: Any) -> None:
        self.seen.append(("inline", msg.subject, msg.reply, msg.data, msg.headers))

    def _raw(self, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        if data == b"raise":
            raise ValueError("handler failed")
        self.seen.append(("raw", subject, reply, data, headers))

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
    ) -> None:
        if sid == QUEUED_SID or sid not in self._subs:
            self.seen.append(("queued", sid, subject, reply, data, headers))
            return
        await super()._process_msg(sid, subject, reply, data, headers)

    async def _process_ping(self) -> None:
        self.seen.append(("ping",))

    async def _process_pong(self) -> None:
        self.seen.append(("pong",))

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        self.seen.append(("info", info))

    async def _process_err(self, err_msg: str) -> None:
        self.seen.append(("err", err_msg))

    async def _record_error(self, e: Exception) -> None:
        self.seen.append(("error", str(e)))


class _Sub:
    pass


def _hmsg(sid: int, subject: str, reply: str, headers: bytes, payload: bytes) -> bytes:
    size = len(headers)
    middle = f" {reply}" if reply else ""
    line = f"HMSG {subject} {sid}{middle} {size} {size + len(payload)}\r\n"
    return line.encode() + headers + payload + b"\r\n"


def _msg(sid: int, subject: str, reply: str, payload: bytes) -> bytes:
    middle = f" {reply}" if reply else ""
    return f"MSG {subject} {sid}{middle} {len(payload)}\r\n".encode() + payload + b"\r\n"


STREAM = b"".join(
    [
        b'INFO {"server_id":"x","max_payload":1048576}\r\n',
        _msg(INLINE_SID, "a.b", "", b"hello"),
        _hmsg(RAW_SID, "_INBOX.x.1", "", b"NATS/1.0\r\nNats-Sequence: 4\r\n\r\n", b'{"v":1}'),
        b"PING\r\n",
        _hmsg(RAW_SID, "_INBOX.x.1", "", b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\n\r\n", b""),
        _msg(QUEUED_SID, "c", "reply.to", b""),
        b"+OK\r\n",
        _hmsg(QUEUED_SID, "d.e", "$JS.ACK.s.c.1.2.3.4.5", b"NATS/1.0\r\nA: b\r\n\r\n", b"x\r\ny"),
        _msg(RAW_SID, "f", "", b"raise"),
        b"PONG\r\n",
        _msg(INLINE_SID, "g", "r", b"MSG 1 2 3\r\n"),  # a payload that looks like a line
        _msg(99, "unknown.sid", "", b"dropped"),
        b"MSG  spaced   1   7\r\npayload\r\n",  # odd spacing: nats-py's parser takes it
        b"-ERR 'Stale Connection'\r\n",
        _msg(INLINE_SID, "h", "", b"after the error"),
    ]
)


async def _parse_in_pieces(parse: Any, cuts: list[int]) -> list[tuple[Any, ...]]:
    client = Recorder()
    parser = Parser(client)
    start = 0
    for cut in [*sorted(cuts), len(STREAM)]:
        await parse(parser, STREAM[start:cut])
        start = max(start, cut)
    assert not parser.buf
    return client.seen


async def test_a_stream_in_one_piece_is_parsed_as_nats_py_parses_it() -> None:
    ours = await _parse_in_pieces(wire_parser.parse, [])
    assert ours == await _parse_in_pieces(wire_parser._original_parse, [])
    assert len([seen for seen in ours if seen[0] in ("inline", "raw", "queued")]) == 9
    assert ("error", "handler failed") in ours


async def test_a_stream_cut_at_every_byte_is_parsed_as_in_one_piece() -> None:
    whole = await _parse_in_pieces(wire_parser._original_parse, [])
    assert await _parse_in_pieces(wire_parser.parse, list(range(len(STREAM)))) == whole


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
async def test_a_stream_cut_anywhere_is_parsed_as_nats_py_parses_it(cuts: list[int]) -> None:
    expected = await _parse_in_pieces(wire_parser._original_parse, cuts)
    assert await _parse_in_pieces(wire_parser.parse, cuts) == expected


async def test_a_malformed_message_line_is_refused_as_nats_py_refuses_it() -> None:
    for bad in (b"MSG a 1 x\r\n", b"HMSG a 1 5\r\n", b"MSG a b 1\r\n"):
        errors: list[type[Exception] | None] = []
        for parse in (wire_parser.parse, wire_parser._original_parse):
            try:
                await parse(Parser(Recorder()), bad)
            except Exception as exc:
                errors.append(type(exc))
            else:
                errors.append(None)
        assert errors[0] == errors[1] and errors[0] is not None, bad
