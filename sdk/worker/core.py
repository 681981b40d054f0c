"""The worker: pulls jobs for its labels and handlers, runs them under leases, reports results.

::

    worker = Worker(WorkerConfig(labels={"linux"}, max_concurrent_jobs=4))

    @worker.job("resize")
    async def resize(ctx: JobContext, inp: ResizeIn) -> ResizeOut: ...

    await worker.run()  # until SIGTERM/SIGINT

How it works (see docs/architecture.md, "Workers"): the worker watches KV ``jw_labelsets`` and
pulls from the durable consumer of every label set its capabilities (labels plus ``@<handler>``
per handler) include. A consumer's ack wait is the lease; one heartbeat tick per worker renews
the leases of all running jobs with ``in_progress()``. Claims and results are decided by the job
actor and appended under CAS, so a stale attempt's result is rejected in the log.

A handler's jobs run with its own settings (``handler_config``: ``JETWORK_WORKER_<NAME>_<FIELD>``
variables and the decorator's keywords over the worker's config): the label sets naming it
(``@<name>``) get its lease and poll interval, its jobs its concurrency (within the worker's),
cancellation checks, log and output limits; the heartbeat tick runs as often as the most
demanding of them asks.

Stopping (signals, draining, aborting) is ``WorkerShutdown``, in ``sdk.worker.shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import BaseModel

from events import subjects
from events.connection import NatsSettings, connect
from events.direct_get import DirectReader
from events.dispatch import InvalidDispatch, LabelSet, capabilities, serves
from events.store import EventStore
from events.topology import TOPOLOGY_PATIENCE, ensure_topology, patiently
from sdk.worker.attempt import Attempt, AttemptEnv
from sdk.worker.claims import now
from sdk.worker.concurrency import ConcurrencyGroups
from sdk.worker.config import WorkerConfig
from sdk.worker.control_keys import watched_again
from sdk.worker.executors import Executor, PythonExecutor, RoutingExecutor, ShellExecutor
from sdk.worker.handler_schemas import published_schemas
from sdk.worker.handlers import HandlerRegistry
from sdk.worker.ladder import Ladder, join_ladder
from sdk.worker.leases import LeaseKeeper
from sdk.worker.lifecycle import Listener, for_handler
from sdk.worker.metered import observed
from sdk.worker.pausing import Pauses
from sdk.worker.presence import PresenceBoard
from sdk.worker.pull import Puller
from sdk.worker.rate_limits import RateLimiter
from sdk.worker.revoked import Revoked
from sdk.worker.shutdown import WorkerShutdown
from sdk.worker.signals import listen_for_shutdown
from sdk.worker.slots import Lane, Slots, handler_of, lanes_for
from sdk.worker.tally import Tally
from telemetry import metrics

F = TypeVar("F", bound=Callable[..., Any])
Phase = Literal["new", "starting", "running", "draining", "stopped"]

READY_TIMEOUT: Final = 10.0
"""Seconds ``start()`` waits for the consumers of the label sets already in use."""

_log = structlog.get_logger("jetwork.worker")


class Worker(WorkerShutdown):
    """Runs jobs whose requirements its labels and handlers cover.

    ``registry`` holds the Python handlers (``uses:`` jobs); ``executor`` replaces the default
    (handlers for ``uses``, the shell for ``run``). ``environ`` (default ``os.environ``) is where
    the config (when not given) and the per-handler variables are read. Several workers may run
    in one process.
    """

    def __init__(
        self,
        config: WorkerConfig | None = None,
        *,
        registry: HandlerRegistry | None = None,
        executor: Executor | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config if config is not None else WorkerConfig.from_env(environ)
        self._log: Any = _log.bind(worker_id=self.config.worker_id)
        self.registry = registry if registry is not None else HandlerRegistry()
        self._executor = executor
        self._environ = environ
        self._handler_settings: dict[str, dict[str, Any]] = {}
        self._lanes: dict[str | None, Lane] = {}
        self.phase: Phase = "new"
        self.aborted = False
        """True when running jobs were abandoned (second signal, shutdown grace expired)."""
        self._aborting = False
        self._nc: NATS | None = None
        self._env: AttemptEnv | None = None
        self._presence: PresenceBoard | None = None
        self.listeners = observed()
        self.tally = Tally()
        self.tally.attach(self.listeners)
        self.limiter = RateLimiter()
        self.groups = ConcurrencyGroups()
        self.revoked = Revoked()
        """Jobs the engine ended, told by cancel notices: which dispatches may run unclaimed."""
        self.pauses = Pauses(
            self.worker_id,
            on_change=self._apply_pauses,
            handlers=lambda: self.registry.names,
            namespace=self.config.namespace,
        )
        self._slots = Slots(self.config.max_concurrent_jobs)
        metrics.SLOTS.labels(self.worker_id).set(self._slots.size)
        metrics.SLOTS_BUSY.labels(self.worker_id).set_function(lambda: self._slots.used)
        # By label set token: its one consumer's Puller, or a Ladder over its priority levels.
        self._pullers: dict[str, Puller | Ladder] = {}
        self._consumers: set[str] = set()
        self._attempts: dict[Attempt, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._leases = LeaseKeeper(
            self._attempts,
            period=self._heartbeat_period,
            connection=lambda: self._nc,
            after_tick=self._after_tick,
            log=self._log,
        )
        self._labelset_task: asyncio.Task[None] | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._watcher: Any = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._shutdown_requested = False
        self._abort_requested = asyncio.Event()
        self._abort_deadline: float | None = None
        self._closed = asyncio.Event()
        self._started_at: datetime | None = None

    # --- public surface --------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self.config.worker_id

    @property
    def capabilities(self) -> frozenset[str]:
        """Labels plus ``@<name>`` per registered handler: what this worker can run."""
        return capabilities(self.config.labels, self.registry.names, self.config.namespace)

    def _nats_settings(self) -> NatsSettings:
        return NatsSettings(
            url=self.config.nats_url,
            name=f"jw-{self.worker_id}",
            on_disconnect=self.revoked.deaf,
            on_reconnect=self._listen_again,
        )

    def _listen_again(self) -> None:
        """Back after a drop: notices resume from the stream's end now (``revoked.py``), and
        the label sets, pauses and rate limits are watched afresh: nats-py's KV watches do not
        always come back after a server restart (``control_keys.py``), and a label set
        registered or a pause lifted after it would not reach this worker."""
        if self._nc is None:
            return
        js = self._nc.jetstream()
        self._in_background(self._listening(self._nc))
        for what, again in (
            ("the label sets", self._watch_labelsets_again),
            ("the worker pauses", functools.partial(self.pauses.watch_again, js)),
            ("the rate limits", functools.partial(self.limiter.watch_again, js)),
        ):
            self._in_background(watched_again(what, again, log=self._log))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_labelsets_again(self) -> None:
        """From the start: the label sets served already stay as they are. (Not a
        ``ControlKeys``: a label set's puller is started by its follower, which awaits.)"""
        assert self._nc is not None
        kv = await self._nc.jetstream().key_value(subjects.KV_LABELSETS)
        watcher = await kv.watchall()
        old, self._watcher = self._watcher, watcher
        if old is not None:
            with contextlib.suppress(Exception):
                await old.stop()  # wakes the follower, which then reads the new watch

    async def _listening(self, nc: NATS) -> None:
        """Note from which stream sequence on every cancel notice reaches this worker: the
        stream's end once the notice subscription is in place (flushed)."""
        try:
            await nc.flush(timeout=5)
            info = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        except Exception as exc:  # stays deaf: every dispatch is claimed first meanwhile
            self._log.warning("cannot read the events stream's end", error=repr(exc))
            return
        self.revoked.listening(int(info.state.last_seq))

    def serves(self, requirements: frozenset[str]) -> bool:
        """Whether this worker pulls the jobs of a label set with ``requirements``."""
        return serves(self.capabilities, requirements)

    def on(self, kind: str, listener: Listener | None = None) -> Any:
        """Call ``listener`` with what happens to this worker's attempts (``lifecycle.py``):
        ``job_started``, ``job_succeeded``, ``job_failed``, ``job_cancelled``, ``job_rejected``,
        ``job_abandoned``, ``lease_lost``, ``poll_failed``. Without ``listener``, a decorator."""
        if listener is None:
            return functools.partial(self.on, kind)
        self.listeners.on(kind, listener)
        return listener

    def job(
        self,
        name: str,
        *,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
        on_success: Listener | None = None,
        on_failure: Listener | None = None,
        **settings: Any,
    ) -> Callable[[F], F]:
        """Decorator registering a Python handler (``uses: name``) on this worker.

        ``settings`` (``lease_ttl=300``, ``max_concurrent_jobs=2``, …) override the worker's
        config for this handler's jobs, over its ``JETWORK_WORKER_<NAME>_<FIELD>`` variables;
        they are checked now (``InvalidWorkerConfig``). See ``handler_config``. ``on_success``
        and ``on_failure`` are called with the ``JobEnded`` of each attempt of this handler once
        its result is recorded; what they raise is logged and changes nothing.
        """
        if self.phase != "new":
            raise RuntimeError("register handlers before the worker starts")
        register = self.registry.job(name, input_model=input_model, output_model=output_model)
        self.config.for_handler(name, self._environ, **settings)

        def decorate(fn: F) -> F:
            register(fn)
            self._handler_settings[name] = settings
            for kind, hook in (("job_succeeded", on_success), ("job_failed", on_failure)):
                if hook is not None:
                    self.listeners.on(kind, for_handler(name, hook))
            return fn

        return decorate

    def handler_config(self, name: str) -> WorkerConfig:
        """The settings the jobs of handler ``name`` run with.

        The worker's config, then ``JETWORK_WORKER_<NAME>_<FIELD>`` variables, then the keywords
        given to ``@worker.job`` (``WorkerConfig.for_handler``). The lease and poll interval are
        those of the handler's consumers; ``max_concurrent_jobs`` bounds its jobs within the
        worker's own bound; the heartbeat tick runs at the smallest interval any of them needs.
        """
        return self.config.for_handler(name, self._environ, **self._handler_settings.get(name, {}))

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or ``request_shutdown``), shut down.

        The first signal stops claiming and lets running jobs finish and report; a second one
        aborts them (their process groups are killed, their leases lapse).
        """
        stop_listening = listen_for_shutdown(self._on_signal)
        try:
            await self.start()
            await self.wait_closed()
        finally:
            stop_listening()

    async def start(self) -> None:
        """Connect, ensure the topology and consumers, announce the worker, start pulling."""
        if self.phase != "new":
            raise RuntimeError(f"worker {self.worker_id} was already started")
        self.phase = "starting"
        self._started_at = now()
        try:
            self._lanes = self._build_lanes()
            self._nc = await connect(self._nats_settings())
            await self._start(self._nc)
        except BaseException:
            self.phase = "stopped"
            self._closed.set()
            await self._close_connection()
            raise
        self.phase = "running"
        self._log.info(
            "worker started",
            labels=sorted(self.config.labels),
            handlers=list(self.registry.names),
            concurrency=self.config.max_concurrent_jobs,
            label_sets=sorted(self._pullers),
        )
        if self._shutdown_requested:
            self._begin_shutdown()

    # --- start ---------------------------------------------------------------------------------

    async def _start(self, nc: NATS) -> None:
        js = nc.jetstream()
        await ensure_topology(js)
        self._env = AttemptEnv(
            worker_id=self.worker_id,
            config=self.config,
            nc=nc,
            js=js,
            store=EventStore(nc),
            executor=self._lanes[None].executor,
            aborting=lambda: self._aborting,
            listeners=self.listeners,
            limiter=self.limiter,
            groups=self.groups,
            logs_reader=DirectReader(nc, stream=subjects.LOGS_STREAM, timeout=5.0),
            revoked=self.revoked,
        )
        self._presence = PresenceBoard(js, worker_id=self.worker_id)
        # Each step is retried while JetStream does not answer: a worker (re)started while a
        # cluster node is down waits for the leader elections instead of exiting.
        deadline = time.monotonic() + TOPOLOGY_PATIENCE
        notify = functools.partial(nc.publish, payload=b"")
        # Before the label sets: a job claimed at once must not miss its cancel notice.
        await nc.subscribe(subjects.CANCEL_NOTICES_ALL, cb=self._on_cancel_notice)
        await self._listening(nc)
        for what, step in (
            ("reading the worker pauses", functools.partial(self.pauses.start, js)),
            ("reading the rate limits", functools.partial(self.limiter.start, js)),
            (
                "opening the concurrency groups",
                functools.partial(self.groups.start, js, self._env.store, notify),
            ),
            ("following the label sets", functools.partial(self._follow_initial_labelsets, js)),
            ("announcing the worker", self._announce),
        ):
            await patiently(step, deadline, what=what)
        loop = asyncio.get_running_loop()
        self._labelset_task = loop.create_task(self._follow_labelsets(), name="jw-labelsets")
        self._leases.start()

    def _build_lanes(self) -> dict[str | None, Lane]:
        handlers = {name: self.handler_config(name) for name in self.registry.names}
        return lanes_for(self.config, handlers, slots=self._slots, executor=self._executor_for)

    def _executor_for(self, config: WorkerConfig) -> Executor:
        if self._executor is not None:
            return self._executor
        python = PythonExecutor.from_config(self.registry, config) if self.registry else None
        return RoutingExecutor(shell=ShellExecutor.from_config(config), python=python)

    async def _follow_initial_labelsets(self, js: JetStreamContext) -> None:
        if self._watcher is not None:  # an earlier try failed part-way
            with contextlib.suppress(Exception):
                await self._watcher.stop()
        kv = await js.key_value(subjects.KV_LABELSETS)
        self._watcher = await kv.watchall()
        while (entry := await self._watcher.updates(timeout=READY_TIMEOUT)) is not None:
            await self._on_labelset(entry)
        ready = [p.ready.wait() for p in self._pullers.values()]
        if ready:
            await asyncio.wait_for(asyncio.gather(*ready), READY_TIMEOUT)

    async def _follow_labelsets(self) -> None:
        while True:
            try:
                entry = await self._watcher.updates(timeout=None)
                if getattr(entry, "key", None) is not None:  # not a marker (end of values, stop)
                    await self._on_labelset(entry)
            except asyncio.CancelledError:
                raise
            except Exception:  # never stop following: a missed label set strands its jobs
                self._log.exception("following label sets failed, retrying")
                await asyncio.sleep(self.config.poll_interval)

    async def _on_labelset(self, entry: Any) -> None:
        if entry.value is None or entry.operation is not None:
            return  # a delete or purge marker: consumers stay until removed by operators
        try:
            labelset = LabelSet.decode(entry.value)
        except InvalidDispatch as exc:
            self._log.warning("ignoring label set entry", key=entry.key, error=str(exc))
            return
        if labelset.consumer in self._consumers or not self.serves(
            frozenset(labelset.requirements)
        ):
            return
        assert self._nc is not None
        self._consumers.add(labelset.consumer)
        lane = self._lanes[handler_of(labelset)]
        puller = Puller(
            self._nc,
            labelset,
            slots=lane.slots,
            lease_ttl=lane.config.lease_ttl,
            poll_interval=lane.config.poll_interval,
            on_message=self._on_dispatch,
            peers=lambda: len(self._pullers),
            delivering_peers=lambda: sum(p.delivering for p in self._pullers.values()),
            on_poll_failed=functools.partial(self.listeners.emit, "poll_failed"),
        )
        paused = self.pauses.applies_to(handler_of(labelset))
        puller.set_paused(paused)
        current = self._pullers.get(labelset.token)
        if current is None and labelset.priority is None:
            self._pullers[labelset.token] = puller  # no priorities: pulled on its own
            await puller.start()
        else:  # a priority level: the set's levels are pulled highest first
            self._pullers[labelset.token] = await join_ladder(
                current,
                puller,
                poll_interval=lane.config.poll_interval,
                peers=lambda: len(self._pullers),
                paused=paused,
            )
        self._log.info("serving label set", labelset=labelset.route, consumer=labelset.consumer)

    # --- jobs ----------------------------------------------------------------------------------

    def _on_dispatch(self, msg: Msg, puller: Puller) -> None:
        assert self._env is not None
        lane = self._lanes[handler_of(puller.labelset)]
        release = _once(puller.slots.release)
        attempt = Attempt(
            self._env,
            msg,
            lease_ttl=puller.lease_ttl,
            config=lane.config,
            executor=lane.executor,
            release_slot=release,
        )
        task = asyncio.get_running_loop().create_task(self._run_attempt(attempt, release))
        self._attempts[attempt] = task

    async def _run_attempt(self, attempt: Attempt, release_slot: Callable[[], None]) -> None:
        try:
            await attempt.run()
        except Exception:
            self._log.exception("job attempt crashed", dispatch_seq=attempt.dispatch_seq)
        finally:
            self._attempts.pop(attempt, None)
            release_slot()

    async def _on_cancel_notice(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 4:
            return
        key = (parts[2], parts[3])
        self.revoked.told(*key)
        for attempt in list(self._attempts):
            if attempt.key == key:
                attempt.check_now()

    # --- heartbeats and presence ---------------------------------------------------------------

    def _heartbeat_period(self) -> float:
        # One tick renews every lease, so it runs as often as the most demanding consumer asks:
        # its handler's heartbeat, or a third of its lease when another worker made it shorter.
        periods = [self.config.heartbeat_interval]
        for puller in self._pullers.values():
            lane = self._lanes[handler_of(puller.labelset)]
            periods += [lane.config.heartbeat_interval, puller.lease_ttl / 3]
        return min(periods)

    def _apply_pauses(self) -> None:
        for puller in self._pullers.values():
            puller.set_paused(self.pauses.applies_to(handler_of(puller.labelset)))
        self._after_tick()  # presence shows what is paused

    def _after_tick(self) -> None:
        finished = self.tally.due()
        if finished is not None:
            self._log.info("jobs finished", **finished)
        # Presence is a KV request: never let a slow one delay the next lease renewal.
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        if self._presence is None or self._started_at is None:
            return
        running = [a.running_job for a in list(self._attempts)]
        await self._presence.put(
            labels=self.config.labels,
            handlers=self.registry.names,
            concurrency=self.config.max_concurrent_jobs,
            started_at=self._started_at,
            running=[job for job in running if job is not None],
            paused=self.pauses.paused,
            schemas=published_schemas(self.registry),
            namespace=self.config.namespace,
        )


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, run by the first call only (a slot is freed once: after execution, or at the
    end of an attempt that never ran)."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
