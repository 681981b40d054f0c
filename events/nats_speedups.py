"""A faster header parser and JetStream metadata parser for nats-py, installed by
``events.connection``.

nats-py 2.16 parses every message's headers with a per-character generator to reject names
containing whitespace; every stored event carries several headers (msg id, CAS headers), so on
the engine's and projector's hot paths that check alone cost ~15% of CPU (profiled). This
version has the same behaviour (tested against the original in tests/unit/test_nats_speedups.py)
with one compiled regex per name.

Every JetStream delivery's metadata (sequences, pending count, time) is parsed from its reply
subject by ``Msg.metadata``; nats-py builds two frozen dataclasses through their generated
``__init__`` (an ``object.__setattr__`` per field), ~8 µs a message, which the projector pays for
each event it folds. ``metadata_from_reply`` fills the same objects directly (~3 µs); tested
equal to the original in tests/unit/test_nats_speedups.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from nats.aio.client import Client, _validate_subject
from nats.aio.msg import Msg
from nats.errors import (
    BadHeaderError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)
from nats.js.api import Header

_CRLF = b"\r\n"
_WHITESPACE = re.compile(r"\s")
# What ``bytes.strip()`` strips (``str.strip()`` also strips \x1c-\x1f, which bytes keep).
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c"
_CLEAN_NAMES: set[str] = set()  # header names known to hold no whitespace
_CLEAN_NAMES_KEPT = 256  # bounded: a publisher may send any names
_GOOD_HEADER_NAMES: set[str] = set()  # names already checked for publishing
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # nats-py's rule for a name
_NEWLINES_TO_SPACES = str.maketrans({"\r": " ", "\n": " "})
_original = Client._parse_header_lines
_Metadata = Msg.Metadata
_SequencePair = Msg.Metadata.SequencePair
_original_from_reply = Msg.Metadata._from_reply
_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>
_HEADER_LINE_SIZE = len(b"NATS/1.0")
_SPACE = ord(" ")
_STATUS_SIZE = 3  # 100, 204, 404, 503...
_STATUS = Header.STATUS.value
_DESCRIPTION = Header.DESCRIPTION


def parse_header_lines(raw: bytes) -> dict[str, str]:
    # Headers are ASCII nearly always: then one decode of the block and str operations, with
    # the names already seen free of whitespace remembered; any other byte takes the slow path.
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return _parse_header_bytes(raw)
    out: dict[str, str] = {}
    clean = _CLEAN_NAMES
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip(_ASCII_WHITESPACE)
        if key not in clean:
            if _WHITESPACE.search(key):
                continue
            if len(clean) < _CLEAN_NAMES_KEPT:
                clean.add(key)
        out[key] = value.strip(_ASCII_WHITESPACE)
    return out


def _parse_header_bytes(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def process_headers(raw: bytes | None) -> dict[str, str] | None:
    """``Client._process_headers`` without its coroutine (it awaits nothing when nats-py has no
    ``fast_mail_parser``, which ``wire_parser`` checks): the message's headers, its inline status
    (``NATS/1.0 204 EOB``) as ``Status`` and ``Description``. Tested equal to nats-py's."""
    if not raw:
        return None
    hdr: dict[str, str] | None = None
    rest = raw[_HEADER_LINE_SIZE:]
    if rest[0] == _SPACE:  # an inline status, perhaps with headers after it
        line = raw[_HEADER_LINE_SIZE + 1 :]
        status = line[:_STATUS_SIZE].strip().decode()
        description = line[_STATUS_SIZE + 1 : len(line) - 4]
        hdr = {_STATUS: status} if status.isdigit() else {}
        rest = rest[rest.find(_CRLF) + 2 :]
        if description:
            cut = description.find(_CRLF)
            if cut > 0:
                hdr[_DESCRIPTION] = description[:cut].decode()
                hdr.update(parse_header_lines(description[cut + 2 :]))
            else:
                hdr[_DESCRIPTION] = description.decode()
    if len(rest) <= len(_CRLF):
        return hdr
    parsed = parse_header_lines(raw[_HEADER_LINE_SIZE + 2 :])
    if hdr:
        hdr.update(parsed)
        return hdr
    return parsed or None


def original_parse_header_lines(raw: bytes) -> dict[str, str]:
    result: dict[str, str] = _original(raw)
    return result


def metadata_from_reply(reply: str) -> Msg.Metadata:
    """``Msg.Metadata._from_reply``: the same checks (``NotJSMessageError``), the same object."""
    tokens = _Metadata._get_metadata_fields(reply)
    if len(tokens) == _V1_TOKENS:
        domain = None
        stream, consumer, delivered, sseq, cseq, stamp, pending = tokens[2:9]
    else:
        domain = "" if tokens[2] == "_" else tokens[2]
        stream, consumer, delivered, sseq, cseq, stamp, pending = tokens[4:11]
    pair = object.__new__(_SequencePair)
    pair.__dict__.update(consumer=int(cseq), stream=int(sseq))
    metadata = object.__new__(_Metadata)
    metadata.__dict__.update(
        sequence=pair,
        num_pending=int(pending),
        num_delivered=int(delivered),
        timestamp=datetime.fromtimestamp(int(stamp) / 1_000_000_000.0, UTC),
        stream=stream,
        consumer=consumer,
        domain=domain,
    )
    return metadata


def original_metadata_from_reply(reply: str) -> Msg.Metadata:
    return _original_from_reply(reply)


def install() -> None:
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
    Msg.Metadata._from_reply = staticmethod(metadata_from_reply)  # type: ignore[method-assign]


def hpub_command(subject: str, reply: str, headers: bytes, payload: bytes) -> bytes:
    """The ``HPUB`` protocol line of a message whose headers are already encoded."""
    hdr_len = len(headers)
    return b"".join(
        (
            f"HPUB {subject} {reply} {hdr_len} {hdr_len + len(payload)}\r\n".encode(),
            headers,
            payload,
            b"\r\n",
        )
    )


def encode_headers(headers: dict[str, str]) -> bytes:
    """``headers`` as nats-py's ``publish`` encodes them (``NATS/1.0\\r\\n...\\r\\n\\r\\n``),
    in one join: names stripped, empty ones skipped, others checked once (``BadHeaderError``),
    values stripped with line breaks made spaces. Tested equal to nats-py's encoding."""
    parts = ["NATS/1.0\r\n"]
    good = _GOOD_HEADER_NAMES
    for name, value in headers.items():
        key = name.strip()
        if not key:
            continue
        if key not in good:
            if not _HEADER_KEY.fullmatch(key):
                raise BadHeaderError(key)
            if len(good) < _CLEAN_NAMES_KEPT:
                good.add(key)
        text = value.strip()
        if "\r" in text or "\n" in text:
            text = text.translate(_NEWLINES_TO_SPACES)
        parts.append(f"{key}: {text}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


async def publish_with_headers(
    nc: Client, subject: str, reply: str, headers: bytes, payload: bytes
) -> None:
    """``nc.publish`` with headers already encoded (``NATS/1.0\\r\\n...\\r\\n\\r\\n``).

    nats-py validates the subject and encodes every header on each call; the engine's appends
    carry three headers made from one template, so encoding them once is cheaper. Same checks
    and the same protocol line as nats-py's ``_send_publish``.
    """
    check_payload(nc, payload)
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(payload)
    await nc._send_command(hpub_command(subject, reply, headers, payload))
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def check_payload(nc: Client, payload: bytes) -> None:
    if nc.is_closed:
        raise ConnectionClosedError
    if len(payload) > nc._max_payload:
        raise MaxPayloadError


def check_publish(nc: Client, subject: str, reply: str, payload: bytes) -> None:
    """Every check of nats-py's ``publish`` (subjects, connection state, buffer, size)."""
    if not nc._skip_subject_validation:
        _validate_subject(subject)
        if reply:
            _validate_subject(reply)
    check_payload(nc, payload)
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    if not nc.is_connected and (
        nc._max_pending_size <= 0 or len(payload) + nc._pending_data_size > nc._max_pending_size
    ):
        raise OutboundBufferLimitError


def write_now(nc: Client, commands: list[bytes], payload_bytes: int) -> bool:
    """Hand ``commands`` to the socket in this very step, after what nats-py still holds
    pending (so the order on the wire is kept); False, writing nothing, when not connected.

    nats-py writes from a flusher task, a loop iteration or more after ``publish`` returns. A
    caller that checked a condition just before (the engine: that it still owns a partition)
    needs the bytes gone with no await in between: a process frozen (SIGSTOP, a long pause) in
    that await would send them when it wakes, after the condition stopped holding.
    """
    transport = nc._transport
    if not nc.is_connected or transport is None:
        return False
    pending, nc._pending, nc._pending_data_size = nc._pending, [], 0
    transport.writelines([*pending, *commands])
    nc.stats["out_msgs"] += len(commands)
    nc.stats["out_bytes"] += payload_bytes
    return True
