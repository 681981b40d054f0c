"""What becomes of an attempt's dispatch message: acked (the job is done with, here or by
someone else), released for a later delivery (``nak``), or, undecodable, moved to the dead
letters and terminated. Once settled (``settled``), the attempt's message gets no more heartbeats.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

import structlog
from nats.aio.msg import Msg

from events import subjects
from sdk.worker.config import WorkerConfig

if TYPE_CHECKING:
    from sdk.worker.attempt import AttemptEnv

DEAD_LETTER_SOURCE: Final = "dispatch"

_log = structlog.get_logger("jetwork.worker")


class DispatchMessage:
    """The dispatch message of an ``Attempt`` (set up by ``Attempt.__init__``)."""

    env: AttemptEnv
    msg: Msg
    config: WorkerConfig
    dispatch_seq: int
    settled: bool

    async def _ack(self) -> None:
        self.settled = True
        with contextlib.suppress(Exception):
            await self.msg.ack()

    async def _release(self) -> None:
        """Give the message back for a later delivery (here or elsewhere)."""
        self.settled = True
        with contextlib.suppress(Exception):
            await self.msg.nak(delay=self.config.poll_interval)

    async def _nak_now(self) -> None:
        with contextlib.suppress(Exception):
            await self.msg.nak()

    async def _dead_letter(self, reason: str) -> None:
        _log.error(
            "undecodable dispatch moved to dead letters", reason=reason, seq=self.dispatch_seq
        )
        headers = {
            "Jetwork-Reason": reason[:1000],
            "Jetwork-Subject": self.msg.subject,
            "Jetwork-Stream-Seq": str(self.dispatch_seq),
        }
        try:
            await self.env.js.publish(
                subjects.dead_letter(DEAD_LETTER_SOURCE), self.msg.data, headers=headers
            )
        except Exception as exc:
            _log.error("cannot write the dead letter", error=repr(exc))
        self.settled = True
        with contextlib.suppress(Exception):
            await self.msg.term()
