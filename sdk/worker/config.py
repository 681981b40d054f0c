"""Worker settings: one small frozen object, loaded from ``JETWORK_*`` environment variables.

Every field has an environment variable (see ``ENV_VARS``). Per-handler variables
``JETWORK_WORKER_<NAME>_<FIELD>`` (``NAME`` upper-cased, ``-`` → ``_``) beat the general ones, and
explicit keyword overrides beat the environment::

    JETWORK_WORKER_LEASE_TTL=60s              # every handler
    JETWORK_WORKER_RESIZE_IMAGE_LEASE_TTL=5m  # only for handler "resize-image"

Only the settings of a handler's jobs and of its consumer can differ per handler
(``HANDLER_FIELDS``); the connection, identity, labels and shutdown are the whole worker's
(``WORKER_WIDE_FIELDS``), and a per-handler variable for one of them is an error.

Durations accept plain seconds (``30``, ``1.5``) or one unit (``500ms``, ``30s``, ``2m``, ``1h``);
sizes accept bytes (``65536``) or ``KiB``/``MiB``/``KB``/``MB`` (``64KiB``).

Here: ``WorkerConfig`` and how it is loaded. The variables and the parsing of their values are in
``sdk.worker.config_env``, the validation of a config in ``sdk.worker.config_checks``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from events.errors import JetworkError
from sdk.worker.config_checks import config_problems
from sdk.worker.config_env import (
    ENV_VARS,
    HANDLER_FIELDS,
    KIB,
    MIB,
    PARSERS,
    WORKER_WIDE_FIELDS,
    handler_env_var,
    parse_duration,
    parse_size,
    read_env,
    split_list,
    worker_wide_variables,
)

__all__ = [
    "DEFAULT_NATS_URL",
    "ENV_VARS",
    "HANDLER_FIELDS",
    "KIB",
    "MIB",
    "WORKER_WIDE_FIELDS",
    "InvalidWorkerConfig",
    "WorkerConfig",
    "handler_env_var",
    "new_worker_id",
    "parse_duration",
    "parse_size",
]

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"


class InvalidWorkerConfig(JetworkError, ValueError):
    """The worker settings are inconsistent or an environment variable cannot be parsed."""

    def __init__(self, problems: list[str]) -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid worker configuration: {len(problems)} problem(s)\n{lines}")
        self.problems = problems


def new_worker_id() -> str:
    """A fresh worker id: ``w-`` and 12 hex digits of a random uuid."""
    return f"w-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """How one worker connects, leases, heartbeats, batches logs and bounds what jobs produce.

    Defaults match what worker users expect: lease 30 s, heartbeat 10 s (must stay below the
    lease), poll 2 s, cancellation check 2 s, log batches every 500 ms, one job at a time.
    """

    nats_url: str = DEFAULT_NATS_URL
    """One server URL or a comma-separated list (``nats://a:4222,nats://b:4222``)."""
    worker_id: str = field(default_factory=new_worker_id)
    labels: frozenset[str] = frozenset()
    """Capabilities; a job runs here only if all of its labels are in this set."""
    lease_ttl: float = 30.0
    """Seconds without a heartbeat after which the job is re-delivered to another worker."""
    poll_interval: float = 2.0
    """Seconds an idle worker waits for work before polling again."""
    heartbeat_interval: float = 10.0
    """Seconds between lease renewals of a running job; must be less than ``lease_ttl``."""
    cancellation_check_interval: float = 2.0
    """Upper bound, in seconds, for a cancel request to reach a running job."""
    claim_window: float = 0.1
    """Seconds a first delivery may run before its claim (``JobStarted``) is appended: a run
    that ends sooner appends its claim inside its result, one write instead of two (``0``:
    claim before every run). Logs, progress and a cancel check append the claim first."""
    log_batch_interval: float = 0.5
    """Seconds a log line may wait before its batch is published."""
    max_concurrent_jobs: int = 1
    shutdown_grace: float | None = None
    """Seconds to let running jobs finish on the first SIGTERM; ``None`` waits for them all."""
    kill_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL when a job's process group is stopped."""
    max_output_bytes: int = 64 * KIB
    """Bound on a job's outputs (keys + values, UTF-8) and on a handler's JSON result. A job that
    produces more fails without retry: truncated outputs would silently corrupt downstream jobs."""
    max_log_line_bytes: int = 16 * KIB
    """Longer log lines are cut to this size and end with ``… [truncated N bytes]``."""
    log_batch_max_lines: int = 1000
    log_batch_max_bytes: int = 256 * KIB
    """A batch is published early when it reaches either bound (keep well under max_payload)."""
    log_buffer_max_lines: int = 20_000
    log_buffer_max_bytes: int = 4 * MIB
    """Unpublished log lines held per job; at either bound the job's output is not read (its
    writes block) until half of them are published: lines are never dropped."""
    max_log_bytes: int = 64 * MIB
    """Log kept per attempt; further lines are left out, and the log says so where and how many."""
    env_clear: bool = False
    """Start shell jobs from a clean environment (``BASIC_ENV`` plus ``env_allow``) instead of
    the worker's own."""
    env_allow: tuple[str, ...] = ()
    """With ``env_clear``: the worker's variables a job keeps (``NAME``, or ``PREFIX*``)."""
    namespace: str = "default"
    """The namespace whose jobs this worker claims (no other's: ``events/namespaces.py``)."""

    def __post_init__(self) -> None:
        allow: Any = self.env_allow
        if isinstance(allow, str):
            allow = split_list(allow)
        if not isinstance(allow, tuple):
            object.__setattr__(self, "env_allow", tuple(allow))
        labels: Any = self.labels
        if isinstance(labels, str):
            labels = split_list(labels)
        if not isinstance(labels, frozenset):
            object.__setattr__(self, "labels", frozenset(labels))
        problems = config_problems(self)
        if problems:
            raise InvalidWorkerConfig(problems)

    @property
    def servers(self) -> list[str]:
        """``nats_url`` split into the list of servers nats-py expects."""
        return split_list(self.nats_url)

    def replace(self, **changes: Any) -> WorkerConfig:
        """A copy with ``changes`` applied and validated again."""
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        handler: str | None = None,
        **overrides: Any,
    ) -> WorkerConfig:
        """Build a config from ``environ`` (default ``os.environ``), then apply ``overrides``.

        With ``handler``, ``JETWORK_WORKER_<HANDLER>_<FIELD>`` variables take precedence over the
        general ``JETWORK_WORKER_<FIELD>`` ones. Unparseable values raise ``InvalidWorkerConfig``
        naming the variable and its value.
        """
        env = os.environ if environ is None else environ
        _check_fields(overrides)
        candidates = {name: [var] for name, var in ENV_VARS.items()}
        problems: list[str] = []
        if handler is not None:
            problems += worker_wide_variables(env, handler)
            for name in HANDLER_FIELDS:
                candidates[name].insert(0, handler_env_var(handler, name))
        values, sources, unparsed = read_env(env, candidates)
        problems += unparsed
        if problems:
            raise InvalidWorkerConfig(problems)
        values.update(overrides)
        try:
            return cls(**values)
        except InvalidWorkerConfig as exc:
            raise _naming_sources(exc, sources, overrides) from None

    def for_handler(
        self,
        handler: str,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> WorkerConfig:
        """The settings the jobs of ``handler`` run with: this config, then the handler's
        ``JETWORK_WORKER_<HANDLER>_<FIELD>`` variables in ``environ`` (default ``os.environ``),
        then ``overrides`` (e.g. ``lease_ttl=300``).

        Only ``HANDLER_FIELDS`` can differ per handler. A per-handler variable or override of a
        worker-wide setting, an unparseable value or an inconsistent result (a heartbeat not
        below the handler's lease) raises ``InvalidWorkerConfig`` naming the handler.
        """
        env = os.environ if environ is None else environ
        _check_fields(overrides)
        problems = worker_wide_variables(env, handler)
        problems += [
            f"{name} is a setting of the whole worker and cannot be set for handler {handler!r}"
            for name in sorted(set(overrides) & WORKER_WIDE_FIELDS)
        ]
        candidates = {name: [handler_env_var(handler, name)] for name in HANDLER_FIELDS}
        values, sources, unparsed = read_env(env, candidates)
        problems += unparsed
        if problems:
            raise InvalidWorkerConfig(problems)
        values.update(overrides)
        try:
            return replace(self, **values)
        except InvalidWorkerConfig as exc:
            found = _naming_sources(exc, sources, overrides).problems
            raise InvalidWorkerConfig([f"handler {handler!r}: {p}" for p in found]) from None


def _check_fields(overrides: Mapping[str, Any]) -> None:
    unknown = sorted(set(overrides) - _FIELD_NAMES)
    if unknown:
        raise TypeError(
            f"unknown WorkerConfig field(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_FIELD_NAMES))}"
        )


def _naming_sources(
    exc: InvalidWorkerConfig, sources: Mapping[str, str], overrides: Mapping[str, Any]
) -> InvalidWorkerConfig:
    """``exc`` with the environment variables its values came from (when any did)."""
    used = [source for name, source in sources.items() if name not in overrides]
    if not used:
        return exc
    return InvalidWorkerConfig(
        [*exc.problems, f"values taken from the environment: {', '.join(used)}"]
    )


_FIELD_NAMES: Final = frozenset(f.name for f in fields(WorkerConfig))
assert _FIELD_NAMES == set(ENV_VARS) == set(PARSERS), "every field needs a variable and a parser"
