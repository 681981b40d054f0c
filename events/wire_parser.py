"""nats-py's protocol parser with a fast path for messages, installed by ``events.connection``.

nats-py's ``Parser.parse`` tries a regex per message (``MSG``'s, then ``HMSG``'s), deletes each
message from the front of its buffer, and awaits a coroutine per message that awaits another
to parse the headers. Measured on a direct-get batch of 2,006 stored events, that is ~6 µs per
message before any jetwork code runs, and every process pays it on every message it receives
(acks, deliveries, events). Here a ``MSG``/``HMSG`` line is split at its spaces, the buffer is
cut once per call, and a message for an inline subscription (``events.inline_delivery``) is
handed over without a coroutine (and with its header block unparsed, if it asks so).

Anything else (``PING``, ``INFO``, ``-ERR``, a malformed line) goes to nats-py's own parser,
which takes the buffer from there with the same state (``state``, ``msg_arg``, ``needed``):
the behaviour is nats-py's, tested against it in tests/unit/test_wire_parser.py.
"""

from __future__ import annotations

from typing import Any

import nats.aio.client
from nats.protocol.parser import AWAITING_CONTROL_LINE, AWAITING_MSG_PAYLOAD, Parser

from events.inline_delivery import AS_BLOCK, deliver, inline_delivery
from events.nats_speedups import process_headers

_original_parse = Parser.parse
_HMSG = b"HMSG "
_MSG = b"MSG "
_CRLF = b"\r\n"
_CRLF_SIZE = 2


async def parse(self: Parser, data: bytes = b"") -> None:
    """``Parser.parse``: dispatch every whole message in the buffer, keep the rest."""
    buf = self.buf
    buf.extend(data)
    pos = 0
    nc = self.nc
    try:
        while pos < len(buf):
            if self.state == AWAITING_MSG_PAYLOAD:
                end = pos + self.needed
                if len(buf) < end + _CRLF_SIZE:
                    return  # the payload is not all here yet
                sid, subject, reply, payload, headers = _take_payload(self, buf, pos, end)
                pos = end + _CRLF_SIZE
                delivery = inline_delivery(nc, sid)
                if delivery is None:
                    await nc._process_msg(sid, subject, reply, payload, headers)
                    if self.buf is not buf:  # the connection was reset meanwhile
                        return
                    continue
                hdr = headers if delivery[1] == AS_BLOCK else process_headers(headers)
                failed = deliver(nc, delivery, sid, subject, reply, payload, hdr)
                if failed is not None:
                    await nc._error_cb(failed)
                continue
            line_end = buf.find(_CRLF, pos)
            if line_end < 0 or not _take_message_line(self, bytes(buf[pos:line_end])):
                # Not a message (or not yet a whole line): nats-py's parser from here.
                del buf[:pos]
                pos = 0
                await _original_parse(self)
                return
            pos = line_end + _CRLF_SIZE
    finally:
        if pos and self.buf is buf:
            del buf[:pos]


def _take_message_line(self: Parser, line: bytes) -> bool:
    """Read a ``MSG``/``HMSG`` control line into the parser's state; False for any other line
    (and for a malformed one, which nats-py's parser then reports)."""
    if line.startswith(_HMSG):
        tokens, sizes = line[len(_HMSG) :].split(), 2
    elif line.startswith(_MSG):
        tokens, sizes = line[len(_MSG) :].split(), 1
    else:
        return False
    # subject, sid, an optional reply subject, then the header size (HMSG) and the total size
    count = len(tokens)
    if count != 2 + sizes and count != 3 + sizes:
        return False
    sid, needed = tokens[1], tokens[-1]
    header_size = tokens[-2] if sizes == 2 else b"0"
    if not (sid.isdigit() and needed.isdigit() and header_size.isdigit()):
        return False
    args: dict[str, Any] = self.msg_arg
    args["subject"] = tokens[0]
    args["sid"] = int(sid)
    args["reply"] = tokens[2] if count == 3 + sizes else b""
    self.needed = int(needed)
    self.header_needed = int(header_size)
    self.state = AWAITING_MSG_PAYLOAD
    return True


def _take_payload(
    self: Parser, buf: bytearray, start: int, end: int
) -> tuple[int, bytes, bytes, bytes, bytes | None]:
    """The message whose payload (headers included) is ``buf[start:end]``; back to lines."""
    header_size = self.header_needed
    headers = bytes(buf[start : start + header_size]) if header_size else None
    payload = bytes(buf[start + header_size : end])
    self.header_needed = 0
    self.state = AWAITING_CONTROL_LINE
    args = self.msg_arg
    return args["sid"], args["subject"], args["reply"], payload, headers


def install() -> None:
    # ``process_headers`` is nats-py's header parsing only without fast_mail_parser.
    if getattr(nats.aio.client, "parse_email", None) is None:
        Parser.parse = parse  # type: ignore[method-assign]
