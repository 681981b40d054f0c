"""Dead letters: input jetwork could not process, kept for operators (``jetwork dead-letters``).

Recording a dead letter never raises: it is what we do when something already went wrong.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import structlog
from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict

from events import subjects
from telemetry import metrics

_log = structlog.get_logger("jetwork.dead_letters")
_MAX_KEPT_PAYLOAD = 64 * 1024
# Reasons quote what they refuse (an unknown tag, a field): a huge input must not make a dead
# letter too big to publish (max_payload), which would lose the record of it.
_MAX_REASON = 2000


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str  # which consumer refused it: commands, events, timers, ...
    subject: str
    seq: int | None = None
    reason: str
    payload: str  # as text when it is UTF-8, else base64 (prefixed "base64:")
    payload_size: int
    at: datetime


def _printable(payload: bytes) -> str:
    kept = payload[:_MAX_KEPT_PAYLOAD]
    try:
        return kept.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(kept).decode()


async def record_dead_letter(
    nc: NATS,
    *,
    source: str,
    subject: str,
    payload: bytes,
    reason: str,
    seq: int | None = None,
    msg_id: str | None = None,
) -> None:
    """Record input that could not be processed. ``msg_id`` de-duplicates reports of one thing
    by several processes (within the stream's duplicate window)."""
    metrics.DEAD_LETTERS.labels(source).inc()
    if len(reason) > _MAX_REASON:
        reason = f"{reason[:_MAX_REASON]}... ({len(reason) - _MAX_REASON} more characters)"
    letter = DeadLetter(
        source=source,
        subject=subject,
        seq=seq,
        reason=reason,
        payload=_printable(payload),
        payload_size=len(payload),
        at=datetime.now(UTC),
    )
    _log.error("dead letter", source=source, subject=subject, seq=seq, reason=reason)
    try:
        await nc.jetstream().publish(
            subjects.dead_letter(source),
            letter.model_dump_json().encode(),
            timeout=5,
            headers={"Nats-Msg-Id": msg_id} if msg_id else None,
        )
    except Exception as exc:  # never let bookkeeping of a failure cause another one
        _log.error("could not record dead letter", error=str(exc) or type(exc).__name__)


async def report_undecodable_event(
    nc: NATS, *, subject: str, seq: int, payload: bytes, reason: str
) -> None:
    """A message on an event subject that is not an event: the engine and the projector both
    meet it, and it is recorded once."""
    await record_dead_letter(
        nc,
        source="events",
        subject=subject,
        seq=seq,
        payload=payload,
        reason=reason,
        msg_id=f"undecodable-event.{seq}",
    )


async def list_dead_letters(nc: NATS, *, limit: int = 100) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, oldest first."""
    js = nc.jetstream()
    info = await js.stream_info(subjects.DEAD_LETTERS_STREAM)
    last, first = info.state.last_seq, info.state.first_seq
    letters: list[DeadLetter] = []
    for seq in range(max(first, last - limit + 1), last + 1):
        try:
            msg = await js.get_msg(subjects.DEAD_LETTERS_STREAM, seq=seq)
        except Exception:  # deleted by age: skip
            continue
        if msg.data:
            letters.append(DeadLetter.model_validate_json(msg.data))
    return letters
