"""Pulling dispatch messages: execution slots, lanes, label-set consumers and their pull loops.

The worker speaks JetStream's pull protocol itself instead of using nats-py's ``fetch``: every
pull request gets its own reply subject under one long-lived inbox subscription, so a message
that arrives after its request ended is still seen (and run or released at once) rather than
parked in a client-side queue while its lease runs out, and a request that never ends (a lost
status after a reconnect, the reported fetch stalls) is abandoned by a watchdog.

A pull asks for at most as many messages as the worker has free slots (shared between all its
consumers; a handler allowed fewer jobs at once than the worker also needs one of its own). A
message that arrives when no slot is left (several consumers raced for the last one) is released
with ``nak`` for another worker; it was never claimed, so that is harmless.

A **lane** is what the jobs of one handler (label sets with ``@<handler>``) or of no handler run
with: settings, slots and executor. Its settings give its consumers their lease and poll.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError

from events import subjects
from events.dispatch import HANDLER_PREFIX, LabelSet
from events.errors import StoreError
from sdk.worker.config import WorkerConfig
from sdk.worker.executors import Executor

MAX_ACK_PENDING: Final = 1 << 16
SHORT_JOB: Final = 0.2
"""Jobs that hold a slot less than this (on average) are prefetched: one message per slot waits
in the worker for the next free slot, saving a pull's round trip per job. Longer jobs are not:
a message waiting behind a long job is better taken by an idle worker."""
_HOLD_WEIGHT: Final = 0.1  # of each new job in the moving average of slot hold times
"""Messages one consumer may have out at once, across all its workers (leased, not acked)."""
MAX_PULL_BATCH: Final = 256
WATCHDOG_MARGIN: Final = 2.0
"""Seconds past a pull request's expiry after which it is given up for lost."""
DRAIN_TIMEOUT: Final = 2.0
_CONSUMER_EXISTS: Final = 10148
_NANOS: Final = 1_000_000_000

_log = structlog.get_logger("jetwork.worker")


class Slots:
    """Execution slots: the worker's (``max_concurrent_jobs``), shared by all its consumers, or
    a handler's, taken ``within`` the worker's (a job holds one of each).

    It also learns how long a job holds a slot (``typical_hold``, a moving average) and tells
    listeners (``on_release``) when one frees up."""

    def __init__(self, size: int, *, within: Slots | None = None) -> None:
        self.size = size
        self.used = 0
        self._within = within
        self._free = asyncio.Event()
        self._free.set()
        self._taken: collections.deque[float] = collections.deque()
        self.typical_hold = 0.0
        self._listeners: list[Callable[[], None]] = []

    def on_release(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    @property
    def free(self) -> int:
        own = self.size - self.used
        return own if self._within is None else min(own, self._within.free)

    def try_take(self) -> bool:
        if self.used >= self.size:
            return False
        if self._within is not None and not self._within.try_take():
            return False
        self.used += 1
        if self.used >= self.size:
            self._free.clear()
        self._taken.append(time.monotonic())
        return True

    def release(self) -> None:
        if self.used > 0:
            self.used -= 1
            if self._within is not None:
                self._within.release()
            if self._taken:  # jobs end in any order: an average over them all is enough
                held = time.monotonic() - self._taken.popleft()
                self.typical_hold += (held - self.typical_hold) * _HOLD_WEIGHT
        self._free.set()
        for listener in self._listeners:
            listener()

    async def wait_free(self) -> None:
        while True:
            await self._free.wait()
            if self._within is None:
                return
            await self._within.wait_free()
            if self.used < self.size:
                return


@dataclass(frozen=True, slots=True)
class Lane:
    """How the jobs of one handler (or all jobs naming no handler) run on a worker: with which
    settings (``WorkerConfig.for_handler``), in which slots and by which executor."""

    config: WorkerConfig
    slots: Slots
    executor: Executor


def lanes_for(
    config: WorkerConfig,
    handlers: Mapping[str, WorkerConfig],
    *,
    slots: Slots,
    executor: Callable[[WorkerConfig], Executor],
) -> dict[str | None, Lane]:
    """The lanes of a worker: its own (key ``None``: ``config`` and ``slots``) and one per handler.

    A handler allowed fewer jobs at once than the worker gets slots of its own within the
    worker's; one allowed more is still bound by the worker's (and a warning says so).
    """
    lanes: dict[str | None, Lane] = {None: Lane(config, slots, executor(config))}
    for name, handler_config in handlers.items():
        limit = handler_config.max_concurrent_jobs
        own = slots
        if limit < slots.size:
            own = Slots(limit, within=slots)
        elif limit > slots.size:
            _log.warning(
                "a handler cannot run more jobs at once than its worker",
                handler=name,
                handler_concurrency=limit,
                concurrency=slots.size,
            )
        lanes[name] = Lane(handler_config, own, executor(handler_config))
    return lanes


def handler_of(labelset: LabelSet) -> str | None:
    """The handler whose jobs a label set carries (at most one: a job ``uses`` one handler)."""
    for member in labelset.requirements:
        if member.startswith(HANDLER_PREFIX):
            return member.removeprefix(HANDLER_PREFIX)
    return None


async def ensure_consumer(
    nc: NATS,
    labelset: LabelSet,
    *,
    lease_ttl: float,
    stream: str = subjects.EVENTS_STREAM,
    timeout: float = 5.0,
) -> float:
    """Create the label set's durable pull consumer if absent; return its lease (ack wait).

    Create-if-absent (``action: create``): a consumer made by another worker with another lease
    is used as it is, since workers sharing a label set share one lease; the caller gets the
    lease that really applies.
    """
    name = labelset.consumer
    config = {
        "durable_name": name,
        "name": name,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(lease_ttl * _NANOS),
        "max_deliver": -1,
        "filter_subject": labelset.subject,
        "max_ack_pending": MAX_ACK_PENDING,
    }
    request = {"stream_name": stream, "config": config, "action": "create"}
    subject = f"$JS.API.CONSUMER.CREATE.{stream}.{name}"
    reply = await _api(nc, subject, orjson.dumps(request), timeout)
    error = reply.get("error")
    if error is None:
        return lease_ttl
    if int(error.get("err_code", 0)) != _CONSUMER_EXISTS:
        raise StoreError(
            f"cannot create consumer {name} for label set {labelset.token!r}: "
            f"{error.get('description')}"
        )
    info = await _api(nc, f"$JS.API.CONSUMER.INFO.{stream}.{name}", b"", timeout)
    if "error" in info:
        raise StoreError(f"cannot read consumer {name}: {info['error'].get('description')}")
    return int(info["config"]["ack_wait"]) / _NANOS


async def _nak(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.nak()


async def _api(nc: NATS, subject: str, payload: bytes, timeout: float) -> dict[str, Any]:
    try:
        msg = await nc.request(subject, payload, timeout=timeout)
    except (NatsTimeoutError, TimeoutError, NatsError) as exc:
        raise StoreError(f"JetStream API {subject} failed: {exc!r}", retryable=True) from None
    reply: dict[str, Any] = orjson.loads(msg.data)
    return reply


@dataclass(slots=True)
class _Request:
    """The one open pull request of a puller (messages do not say which request they answer:
    they keep their own subject; only status messages arrive on the request's reply subject)."""

    token: str
    batch: int
    delivered: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


OnMessage = Callable[[Msg, "Puller"], None]


class Puller:
    """Pulls one label set's consumer while ``slots`` has free ones.

    ``on_message(msg, puller)`` receives each dispatch together with the slot it took; the
    receiver must ``puller.slots.release()`` when done with it.
    """

    def __init__(
        self,
        nc: NATS,
        labelset: LabelSet,
        *,
        slots: Slots,
        lease_ttl: float,
        poll_interval: float,
        on_message: OnMessage,
        peers: Callable[[], int] = lambda: 1,
        stream: str = subjects.EVENTS_STREAM,
    ) -> None:
        self._nc = nc
        self.labelset = labelset
        self.slots = slots
        self._wanted_lease = lease_ttl
        self.lease_ttl = lease_ttl
        """The lease that applies (the consumer's ack wait, known once it is ensured)."""
        self._poll = poll_interval
        self._on_message = on_message
        self._peers = peers
        self._stream = stream
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{labelset.consumer}"
        self._inbox = nc.new_inbox()
        self._ids = itertools.count(1)
        self._request: _Request | None = None
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ensured = asyncio.Event()
        self._missing = True
        self.stalls = 0
        """Pull requests given up by the watchdog (neither messages nor a status arrived)."""
        # Prefetched dispatches waiting for a slot (short jobs only), oldest first.
        self._waiting: collections.deque[tuple[Msg, float]] = collections.deque()
        self._room = asyncio.Event()
        self._giving_back: set[asyncio.Task[None]] = set()
        slots.on_release(self._take_waiting)

    @property
    def prefetch(self) -> int:
        """How many dispatches may wait here for a slot: one per slot while jobs are short."""
        return self.slots.size if self.slots.typical_hold < SHORT_JOB else 0

    def _take_waiting(self) -> None:
        """A slot freed up: start the oldest waiting dispatch in it (or let the loop pull)."""
        stale = time.monotonic() - self.lease_ttl / 3  # waited a third of its lease: give it back
        while self._waiting and self.slots.free > 0:
            msg, since = self._waiting.popleft()
            if since < stale or self._stopping:
                self._give_back(msg)
            elif self.slots.try_take():
                self._start(msg)
        self._room.set()

    @property
    def ready(self) -> asyncio.Event:
        """Set once the consumer exists (first successful ensure)."""
        return self._ensured

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"jetwork-pull-{self.labelset.consumer}"
        )

    async def stop(self) -> None:
        """Stop pulling; whatever the server still sends for open requests is released (nak)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            # drain = UNSUB + a round trip: open pull requests lose interest and the server
            # drops them; messages it had sent before are still handled (released) here.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), DRAIN_TIMEOUT)
            self._sub = None
        while self._waiting:  # prefetched, never claimed: for another worker
            await _nak(self._waiting.popleft()[0])
        if self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)

    async def _loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            if self._missing:
                try:
                    await self._ensure()
                except StoreError as exc:
                    _log.warning(
                        "cannot ensure consumer, retrying",
                        labelset=self.labelset.token,
                        error=str(exc),
                        retry_in=backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._poll)
                    continue
                backoff = 0.1
            await self._wait_for_room()
            if self._stopping:
                return
            await self._pull()

    async def _wait_for_room(self) -> None:
        """Until a slot is free, or a prefetched dispatch may wait for one."""
        while self.slots.free <= 0 and len(self._waiting) >= self.prefetch:
            self._room.clear()
            await self._room.wait()

    async def _ensure(self) -> None:
        lease = await ensure_consumer(
            self._nc, self.labelset, lease_ttl=self._wanted_lease, stream=self._stream
        )
        if abs(lease - self._wanted_lease) > 1e-6 and lease != self.lease_ttl:
            _log.warning(
                "label set consumer has another lease; using it",
                labelset=self.labelset.token,
                consumer=self.labelset.consumer,
                lease_ttl=lease,
                configured_lease_ttl=self._wanted_lease,
            )
        self.lease_ttl = lease
        self._missing = False
        self._ensured.set()

    async def _pull(self) -> None:
        free = max(0, self.slots.free) + max(0, self.prefetch - len(self._waiting))
        batch = min(MAX_PULL_BATCH, max(1, free // max(1, self._peers())))
        token = str(next(self._ids))
        request = _Request(token=token, batch=batch)
        self._request = request
        body = {"batch": batch, "expires": int(self._poll * _NANOS)}
        try:
            await self._nc.publish(
                self._next_subject, orjson.dumps(body), reply=f"{self._inbox}.{token}"
            )
            await asyncio.wait_for(request.done.wait(), self._poll + WATCHDOG_MARGIN)
        except TimeoutError:
            self.stalls += 1
            _log.warning(
                "pull request got no answer, pulling again",
                labelset=self.labelset.token,
                waited=self._poll + WATCHDOG_MARGIN,
            )
        except NatsError as exc:  # e.g. the connection is closed or reconnecting
            _log.warning("pull request failed", labelset=self.labelset.token, error=repr(exc))
            await asyncio.sleep(min(1.0, self._poll))
        finally:
            self._request = None

    async def _on_reply(self, msg: Msg) -> None:
        try:
            await self._handle_reply(msg)
        except Exception:  # nats-py would swallow it silently
            _log.exception("handling a pulled message failed", labelset=self.labelset.token)

    async def _handle_reply(self, msg: Msg) -> None:
        request = self._request
        status = msg.headers.get("Status") if msg.headers and not msg.reply else None
        if status is not None:
            if request is not None and msg.subject.rpartition(".")[2] != request.token:
                request = None  # the end of an earlier request the watchdog gave up on
            self._on_status(status, msg, request)
            return
        if request is not None:
            request.delivered += 1
            if request.delivered >= request.batch:
                request.done.set()
        if self._stopping:
            self._give_back(msg)
        elif self.slots.try_take():
            self._start(msg)
        elif len(self._waiting) < self.prefetch:
            self._waiting.append((msg, time.monotonic()))
        else:
            self._give_back(msg)

    def _start(self, msg: Msg) -> None:
        try:
            self._on_message(msg, self)
        except Exception:
            self.slots.release()
            _log.exception("dispatch handler failed", labelset=self.labelset.token)
            self._give_back(msg)

    def _give_back(self, msg: Msg) -> None:
        """Release a dispatch this worker will not run, for another worker (never claimed)."""
        task = asyncio.get_running_loop().create_task(_nak(msg))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    def _on_status(self, status: str, msg: Msg, request: _Request | None) -> None:
        if status == "100":  # idle heartbeat
            return
        if request is not None:
            request.done.set()
        if status in ("404", "408"):  # no messages / request expired: the normal end of a pull
            return
        description = (msg.headers or {}).get("Description", "")
        if status == "503" or "Deleted" in description:
            self._missing = True
        _log.info(
            "pull request ended",
            labelset=self.labelset.token,
            status=status,
            description=description,
        )
