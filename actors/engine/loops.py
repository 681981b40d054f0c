"""The engine's message loops: pull, batch, serialise per workflow, ack or retry or dead-letter.

``MessageLoops`` knows nothing of workflows' meaning: it binds durable consumers, pulls batches
through ``PullFeed`` (several in flight), runs a handler per workflow under that workflow's lock,
acks what was handled and decides what a failure means (retry with backoff, or dead-letter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from actors.engine.settings import EngineSettings
from events.dead_letters import record_dead_letter
from events.errors import InvalidWorkflow, JetworkError, WorkflowNotFound
from events.pull import PullFeed

_log = structlog.get_logger("jetwork.engine")
Handler = Callable[[list[Msg]], Awaitable[None]]

# After this many deliveries a message that keeps failing is dead-lettered instead of retried.
_MAX_DELIVERIES = 5
# Deliveries of a command for a workflow that cannot be found before it is dead-lettered.
_NOT_FOUND_TRIES = 3
# Decisions whose events were reacted to inline, remembered until the consumer delivers them.
_REACTED_MEMORY = 100_000
# Trouble that passes by itself (a restarting server, a leader election, a lost connection): the
# message is retried for as long as it lasts and never dead-lettered for it, or a long outage
# would throw away the commands and events that arrived just before it.
_TRANSIENT = (
    TimeoutError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    OutboundBufferLimitError,
)


class Refused(JetworkError):
    """Input that can never be processed: dead-letter it and move on."""


class MessageLoops:
    def __init__(self, nc: NATS, settings: EngineSettings) -> None:
        self._nc = nc
        self._settings = settings
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._feeds: list[PullFeed] = []
        self._locks: dict[str, list[Any]] = {}  # workflow id -> [lock, users]
        self._limit = asyncio.Semaphore(settings.concurrency)

    async def _start_loops(
        self, loops: Sequence[tuple[str, str, Sequence[str], str, Handler]]
    ) -> None:
        """Bind each (name, stream, filters, durable, handler) and start pulling."""
        self._stopping.clear()  # loops that were stopped may be started again
        js = self._nc.jetstream()
        for name, stream, filters, durable, handler in loops:
            feed = await self._bind(js, stream, durable, filters)
            self._feeds.append(feed)
            self._tasks.append(asyncio.create_task(self._consume(name, feed, handler)))

    async def stop(self) -> None:
        """Finish the batches in hand, then return. Unacked work is redelivered elsewhere."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for feed in self._feeds:
            await feed.stop()
        self._feeds.clear()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    async def start(self) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        self._stopping.set()

    async def _bind(
        self, js: JetStreamContext, stream: str, durable: str, filters: Sequence[str]
    ) -> PullFeed:
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._settings.ack_wait,
            max_deliver=-1,
            max_ack_pending=max(1000, self._settings.batch * 8),
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=list(filters) if len(filters) > 1 else None,
        )
        await js.add_consumer(stream, config)  # create, or update to this configuration
        feed = PullFeed(self._nc, stream=stream, consumer=durable, window=self._settings.batch * 2)
        await feed.start()
        return feed

    async def _consume(
        self,
        name: str,
        feed: PullFeed,
        handle: Callable[[list[Msg]], Awaitable[None]],
    ) -> None:
        """Pull and hand batches over without waiting for earlier ones to finish (bounded)."""
        poll = self._settings.poll_interval
        in_flight: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self._settings.batches_in_flight)
        while not self._stopping.is_set():
            await slots.acquire()
            try:
                messages = await feed.next_batch(self._settings.batch, timeout=poll)
            except Exception as exc:  # connection trouble: keep trying, never die
                slots.release()
                _log.warning("pull failed", consumer=name, error=str(exc) or type(exc).__name__)
                await asyncio.sleep(poll)
                continue
            if not messages:
                slots.release()
                continue
            task = asyncio.create_task(self._handle_batch(name, messages, handle, slots))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _handle_batch(
        self,
        name: str,
        messages: list[Msg],
        handle: Callable[[list[Msg]], Awaitable[None]],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await handle(messages)
        except Exception:  # a bug must not stop the engine; the messages are redelivered
            _log.exception("batch failed", consumer=name, size=len(messages))
        finally:
            slots.release()

    async def _per_workflow(
        self, groups: dict[str, list[Msg]], work: Callable[[str, list[Msg]], Awaitable[None]]
    ) -> None:
        async def guarded(wf_id: str, messages: list[Msg]) -> None:
            # One workflow at a time across concurrent batches: its reactions never race
            # each other (other engines may still race them: CAS settles that).
            async with self._limit, self._workflow_lock(wf_id):
                try:
                    await work(wf_id, messages)
                except Exception as exc:
                    await self._failed(messages, exc, workflow_id=wf_id)
                    return
            for msg in messages:  # acks are plain publishes: no task each
                await msg.ack()

        await asyncio.gather(*(guarded(wf, msgs) for wf, msgs in groups.items()))

    @contextlib.asynccontextmanager
    async def _workflow_lock(self, wf_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(wf_id)
        if entry is None:
            entry = self._locks[wf_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[wf_id]

    async def _failed(self, messages: list[Msg], exc: Exception, *, workflow_id: str) -> None:
        transient = _is_transient(exc)
        for msg in messages:
            refused = _refused(exc, msg)
            if refused or (not transient and msg.metadata.num_delivered >= _MAX_DELIVERIES):
                if not refused:
                    _log.error("giving up on a message", workflow=workflow_id, error=repr(exc))
                await self._dead_letter(msg, str(exc) or repr(exc))
                await msg.ack()
            else:
                _log.warning("will retry", workflow=workflow_id, error=str(exc) or repr(exc))
                await msg.nak(delay=min(30.0, 0.5 * 2**msg.metadata.num_delivered))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        source = msg.subject.split(".", 1)[0]
        source = {"cmd": "commands", "evt": "events", "timer": "timers"}.get(source, source)
        await record_dead_letter(
            self._nc,
            source=source,
            subject=msg.subject,
            payload=msg.data,
            reason=reason,
            seq=msg.metadata.sequence.stream,
        )


def _refused(exc: Exception, msg: Msg) -> bool:
    """Input that can never succeed: dead-letter it at once."""
    if isinstance(exc, Refused | InvalidWorkflow):
        return True
    # A lagging replica may not show a workflow started a moment ago: a cancel for it is retried
    # a couple of times before it counts as the cancel of a workflow that does not exist.
    return isinstance(exc, WorkflowNotFound) and msg.metadata.num_delivered >= _NOT_FOUND_TRIES


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, JetworkError):
        return exc.retryable
    return isinstance(exc, _TRANSIENT)
