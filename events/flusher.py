"""nats-py's flusher, waiting one turn of the event loop before it writes.

nats-py queues what a client publishes and a flusher task writes it to the socket when woken.
It writes at once: the task that woke it is mostly the only one that published since, so
under load nearly every message is a ``write`` of its own (the worker made 1.36 socket writes
per S1 job for its 3.3 messages; profiles put ~16-20% of its samples in them), and nats-server
pays a read for each. Waiting one turn lets every task and callback already due in that turn
(a reply just read lets the next request out, another slot reports its result) add theirs,
and one write carries them all; the turn costs microseconds, so an idle hop is not slower.
S1 with it, alternating: all processes' CPU per job 1.72-1.74 → 1.57-1.58 ms
(docs/performance.md). Otherwise the same as nats-py 2.16's ``_flusher`` (pinned).
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client


async def _flusher(self: Client) -> None:
    assert self._transport, "Client.connect must be called first"
    assert self._flush_queue, "Client.connect must be called first"
    while True:
        if not self.is_connected or self.is_connecting:
            break
        future: asyncio.Future[None] = await self._flush_queue.get()
        try:
            await asyncio.sleep(0)  # what else is due this turn joins this write
            if self._pending_data_size > 0:
                self._transport.writelines(self._pending[:])
                self._pending = []
                self._pending_data_size = 0
                await self._transport.drain()  # type: ignore[no-untyped-call]
        except OSError as e:
            await self._error_cb(e)
            await self._process_op_err(e)
            break
        except (asyncio.CancelledError, RuntimeError, AttributeError):
            break  # RuntimeError: the event loop is closed
        finally:
            if not future.done():  # (it may have been cancelled: nats-py issue #624)
                future.set_result(None)


def install() -> None:
    Client._flusher = _flusher  # type: ignore[method-assign]
