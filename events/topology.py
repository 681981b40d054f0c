"""The JetStream topology — every stream and KV bucket — declared once, created idempotently.

Why each setting is what it is, is in docs/architecture.md ("Streams").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial

from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from events import subjects
from events.errors import StoreError

MINUTE = 60.0
DAY = 24 * 3600.0

# De-duplication is the second line of defence behind CAS: it makes a retried append after a lost
# ack harmless. Two minutes covers any client retry; longer windows cost server memory per msg id.
DUPLICATE_WINDOW = 2 * MINUTE
# How long start-up waits for JetStream to answer (a restarting server, a cluster electing leaders
# while a node is down) before it gives up with a StoreError.
TOPOLOGY_PATIENCE = 30.0
# nats-server: "no suitable peers for placement" (a cluster node has not joined, or is down).
_NO_PEERS = 10005
# The events stream's metadata key holding the partition count it was written with.
PARTITIONS_KEY = "jetwork_partitions"


class PeersNotReady(Exception):
    """Too few cluster nodes are up to place a replicated stream: retried like a timeout."""


_TRANSIENT = (
    NatsTimeoutError,
    TimeoutError,
    NoRespondersError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    ConnectionError,  # the connection dropped while a request was in flight
    PeersNotReady,
)


@dataclass(frozen=True, slots=True)
class Topology:
    """All streams and buckets. ``replicas`` is 1 on a single node, 3 on a cluster."""

    replicas: int = 1
    log_max_age: float = 7 * DAY
    log_max_bytes: int = 1 << 30
    dead_letter_max_age: float = 30 * DAY

    def streams(self) -> list[StreamConfig]:
        return [
            self.events(),
            self.commands(),
            self.logs(),
            self.dead_letters(),
            self.index(),
            self.keys(),
        ]

    def events(self) -> StreamConfig:
        # The source of truth: file storage, no limits, discard "new" (were a server limit ever hit,
        # writes are refused rather than history dropped), no delete of single messages. Purge
        # is allowed for one path only, the deletion of an ended workflow behind its tombstone
        # (sdk.deletion; docs/reliability.md, "Deleting workflows"). No message schedules here:
        # timers are commands, and live on the commands stream. The partition
        # count is recorded in the metadata: every process must hash workflows alike.
        return StreamConfig(
            name=subjects.EVENTS_STREAM,
            description="jetwork events: the source of truth",
            subjects=[subjects.EVENTS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW,
            deny_delete=True,
            deny_purge=False,
            allow_direct=True,
            allow_atomic=True,
            metadata={PARTITIONS_KEY: str(subjects.PARTITIONS)},
        )

    def commands(self) -> StreamConfig:
        # A work queue: each command is consumed once by the engine owning its partition, then
        # removed. Durable timers live here too: a schedule on cmdsched.<p>.<id> fires onto
        # cmd.<p>.timer.<id>, a command like any other, so it survives every process's restart.
        return StreamConfig(
            name=subjects.COMMANDS_STREAM,
            description="jetwork commands (start, cancel, ...) and durable timers",
            subjects=[subjects.COMMANDS_ALL, subjects.TIMER_SCHEDULES_ALL],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW,
            allow_msg_schedules=True,
        )

    def logs(self) -> StreamConfig:
        # Logs are bulky and not the source of truth: bounded by age and size, oldest dropped.
        return StreamConfig(
            name=subjects.LOGS_STREAM,
            description="jetwork job logs",
            subjects=[subjects.LOGS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.log_max_age,
            max_bytes=self.log_max_bytes,
            num_replicas=self.replicas,
            allow_direct=True,
        )

    def dead_letters(self) -> StreamConfig:
        return StreamConfig(
            name=subjects.DEAD_LETTERS_STREAM,
            description="jetwork dead letters: input that could not be processed",
            subjects=[subjects.DEAD_LETTERS_ALL],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.dead_letter_max_age,
            num_replicas=self.replicas,
            allow_direct=True,
        )

    def index(self) -> StreamConfig:
        # The projections' listing index (projections/index.py): one small entry per workflow on
        # wfidx.<generation>.<status>.<name>, deleted when superseded, so it is not append-only.
        # Rebuildable from the log like every projection.
        return self._listing(subjects.INDEX_STREAM, subjects.INDEX_ALL, "workflow listing index")

    def keys(self) -> StreamConfig:
        # The listing's secondary entries (projections/keys.py): per parent, input, label and
        # start bucket, on wfkey.<generation>.<kind>.…; apart from JW_INDEX so that its status
        # scans stay as dense as before. Deleted with their workflow; rebuildable from the log.
        return self._listing(subjects.KEYS_STREAM, subjects.KEYS_ALL, "secondary listing entries")

    def _listing(self, name: str, subject: str, what: str) -> StreamConfig:
        """A stream of listing entries: small messages deleted when superseded, read by
        direct get, rebuildable from the log."""
        return StreamConfig(
            name=name,
            description=f"jetwork projections: {what}",
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=DUPLICATE_WINDOW,
            allow_direct=True,
        )

    def buckets(self) -> list[KeyValueConfig]:
        def bucket(
            name: str, description: str, *, history: int = 1, ttl: float = 0
        ) -> KeyValueConfig:
            return KeyValueConfig(
                bucket=name,
                description=description,
                history=history,
                ttl=ttl or None,
                storage=StorageType.FILE,
                replicas=self.replicas,
                direct=True,
            )

        return [
            bucket(subjects.KV_WORKFLOWS, "projections: workflow views, summaries, recent lists"),
            bucket(subjects.KV_WORKERS, "live workers (entries expire when not refreshed)", ttl=60),
            bucket(subjects.KV_LABELSETS, "label sets in use (JobQueued subjects)"),
            bucket(subjects.KV_PROJECTOR, "projections: the current generation"),
            bucket(subjects.KV_PARTITIONS, "engines: partition leases and live engines"),
            bucket(subjects.KV_GATEWAY, "HTTP gateways: the key that signs lease ids"),
            bucket(
                subjects.KV_CONTROL, "paused workers and handlers (kept: who, when)", history=16
            ),
            # Rate-limit windows (sdk/worker/rate_limits.py): no window is longer than a day.
            bucket(subjects.KV_RATES, "rate limits: starts counted per window", ttl=86400),
            bucket(subjects.KV_CONCURRENCY, "concurrency groups: the attempts holding a slot"),
            bucket(subjects.KV_DEFINITIONS, "workflow definitions by name and version"),
            bucket(subjects.KV_SCHEDULES, "schedules: what they start, when, and their last tick"),
            bucket(subjects.KV_QUOTAS, "namespace quotas: the running workflows they count"),
        ]


async def ensure_topology(
    js: JetStreamContext,
    topology: Topology | None = None,
    *,
    patience: float = TOPOLOGY_PATIENCE,
) -> None:
    """Create or update every stream and bucket. Safe to call from every process at start-up.

    ``topology.replicas`` applies to streams and buckets created here; existing ones keep theirs.
    JetStream not answering (timeouts, no responders, 503) is retried for up to ``patience``
    seconds, then reported as a retryable ``StoreError``: a process started while a cluster node
    is down waits for the leader elections instead of crashing.
    """
    topology = topology or Topology()
    steps: list[Callable[[], Awaitable[None]]] = [partial(_check_partitions, js)]
    steps += [partial(_ensure_stream, js, config) for config in topology.streams()]
    steps += [partial(_ensure_bucket, js, bucket) for bucket in topology.buckets()]
    deadline = time.monotonic() + patience
    for step in steps:
        await patiently(step, deadline, what="creating the streams and buckets")


async def patiently(step: Callable[[], Awaitable[None]], deadline: float, *, what: str) -> None:
    """Run ``step`` until it succeeds, retrying while JetStream does not answer (a timeout, no
    responders, a 503, a dropped connection: a node restarting or a leader being elected) until
    the monotonic ``deadline``; then a retryable ``StoreError`` saying what was being done.

    ``step`` must be safe to run again after it failed part-way.
    """
    pause = 0.25
    while True:
        try:
            await step()
            return
        except _TRANSIENT as exc:
            if time.monotonic() + pause > deadline:
                raise StoreError(
                    f"JetStream did not answer while {what}: {exc or type(exc).__name__}",
                    retryable=True,
                ) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


async def _check_partitions(js: JetStreamContext) -> None:
    """Refuse an events stream written with another partition count (or none: an older layout)."""
    try:
        info = await js.stream_info(subjects.EVENTS_STREAM)
    except NotFoundError:
        return
    recorded = (info.config.metadata or {}).get(PARTITIONS_KEY)
    if recorded == str(subjects.PARTITIONS):
        return
    if recorded is None and not info.state.messages:
        return  # empty: nothing was hashed yet
    raise StoreError(
        f"the events stream {subjects.EVENTS_STREAM} was written "
        + (f"with {recorded} partitions" if recorded else "by an older jetwork without partitions")
        + f", this jetwork uses {subjects.PARTITIONS}: use a fresh data directory or server"
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    # A stream already as wanted is only read: a process of a least-privilege role (events/roles)
    # may read the streams' settings but not create or update them.
    with contextlib.suppress(NotFoundError):
        if _as_wanted((await js.stream_info(str(config.name))).config, config):
            return
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code == _NO_PEERS:
            raise PeersNotReady(f"stream {config.name}: {exc.description}") from None
        # 10058: the stream exists with a different configuration: bring it up to date.
        if exc.err_code != 10058:
            raise StoreError(f"cannot create stream {config.name}: {exc.description}") from None
        try:
            # The replica count is chosen when a stream is created and kept afterwards: every
            # process runs this at start-up, and one with default settings (R1) must not scale a
            # cluster's R3 streams down.
            existing = await js.stream_info(str(config.name))
            # A stream created denying purge keeps denying it: the server refuses to lift it
            # (10052). Such an events stream cannot delete workflows (docs/reliability.md).
            deny_purge = bool(config.deny_purge or existing.config.deny_purge)
            config = replace(
                config, num_replicas=existing.config.num_replicas, deny_purge=deny_purge
            )
            await js.update_stream(config)
        except BadRequestError as update_exc:
            raise StoreError(
                f"stream {config.name} exists with a configuration that cannot be updated: "
                f"{update_exc.description}"
            ) from None
    except ServiceUnavailableError:
        raise  # no leader right now: retried
    except APIError as exc:
        raise StoreError(f"cannot create stream {config.name}: {exc.description}") from None


def _as_wanted(existing: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether ``existing`` has every setting ``wanted`` sets. A falsy wanted value is the
    server's default (which it fills in: a duplicate window, rollups for schedules), the replica
    count is kept as created (below), and metadata may hold more keys (the server's own)."""
    have = existing.as_dict()
    for name, value in wanted.as_dict().items():
        if name == "num_replicas" or not value:
            continue
        if name == "metadata":
            recorded = existing.metadata or {}
            if any(recorded.get(key) != v for key, v in (wanted.metadata or {}).items()):
                return False
        elif have.get(name) != value:
            return False
    return True


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    try:
        await js.key_value(config.bucket)
    except NotFoundError:
        try:
            await js.create_key_value(config)
        except BadRequestError as exc:
            if exc.err_code == _NO_PEERS:
                raise PeersNotReady(f"bucket {config.bucket}: {exc.description}") from None
            if exc.err_code != 10058:  # created concurrently by another process: fine
                raise StoreError(
                    f"cannot create bucket {config.bucket}: {exc.description}"
                ) from None


def with_replicas(topology: Topology, replicas: int) -> Topology:
    return replace(topology, replicas=replicas)
