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
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from events.errors import JetworkError
from events.subjects import is_valid_token

KIB: Final = 1024
MIB: Final = 1024 * KIB

DEFAULT_NATS_URL: Final = "nats://127.0.0.1:4222"
_URL_SCHEMES: Final = ("nats://", "tls://", "ws://", "wss://")


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

    def __post_init__(self) -> None:
        allow: Any = self.env_allow
        if isinstance(allow, str):
            allow = _split_list(allow)
        if not isinstance(allow, tuple):
            object.__setattr__(self, "env_allow", tuple(allow))
        labels: Any = self.labels
        if isinstance(labels, str):
            labels = _split_list(labels)
        if not isinstance(labels, frozenset):
            object.__setattr__(self, "labels", frozenset(labels))
        problems = _problems(self)
        if problems:
            raise InvalidWorkerConfig(problems)

    @property
    def servers(self) -> list[str]:
        """``nats_url`` split into the list of servers nats-py expects."""
        return _split_list(self.nats_url)

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
            problems += _worker_wide_variables(env, handler)
            for name in HANDLER_FIELDS:
                candidates[name].insert(0, handler_env_var(handler, name))
        values, sources, unparsed = _read_env(env, candidates)
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
        problems = _worker_wide_variables(env, handler)
        problems += [
            f"{name} is a setting of the whole worker and cannot be set for handler {handler!r}"
            for name in sorted(set(overrides) & WORKER_WIDE_FIELDS)
        ]
        candidates = {name: [handler_env_var(handler, name)] for name in HANDLER_FIELDS}
        values, sources, unparsed = _read_env(env, candidates)
        problems += unparsed
        if problems:
            raise InvalidWorkerConfig(problems)
        values.update(overrides)
        try:
            return replace(self, **values)
        except InvalidWorkerConfig as exc:
            found = _naming_sources(exc, sources, overrides).problems
            raise InvalidWorkerConfig([f"handler {handler!r}: {p}" for p in found]) from None


ENV_VARS: Final[Mapping[str, str]] = {
    "nats_url": "JETWORK_NATS_URL",
    "worker_id": "JETWORK_WORKER_ID",
    "labels": "JETWORK_WORKER_LABELS",
    "lease_ttl": "JETWORK_WORKER_LEASE_TTL",
    "poll_interval": "JETWORK_WORKER_POLL_INTERVAL",
    "heartbeat_interval": "JETWORK_WORKER_HEARTBEAT_INTERVAL",
    "cancellation_check_interval": "JETWORK_WORKER_CANCELLATION_CHECK_INTERVAL",
    "log_batch_interval": "JETWORK_WORKER_LOG_BATCH_INTERVAL",
    "max_concurrent_jobs": "JETWORK_WORKER_CONCURRENCY",
    "shutdown_grace": "JETWORK_WORKER_SHUTDOWN_GRACE",
    "kill_grace": "JETWORK_WORKER_KILL_GRACE",
    "max_output_bytes": "JETWORK_WORKER_MAX_OUTPUT_BYTES",
    "max_log_line_bytes": "JETWORK_WORKER_MAX_LOG_LINE_BYTES",
    "log_batch_max_lines": "JETWORK_WORKER_LOG_BATCH_MAX_LINES",
    "log_batch_max_bytes": "JETWORK_WORKER_LOG_BATCH_MAX_BYTES",
    "log_buffer_max_lines": "JETWORK_WORKER_LOG_BUFFER_MAX_LINES",
    "log_buffer_max_bytes": "JETWORK_WORKER_LOG_BUFFER_MAX_BYTES",
    "max_log_bytes": "JETWORK_WORKER_MAX_LOG_BYTES",
    "env_clear": "JETWORK_WORKER_ENV_CLEAR",
    "env_allow": "JETWORK_WORKER_ENV_ALLOW",
}
"""Field name → general environment variable."""


def handler_env_var(handler: str, field_name: str) -> str:
    """The per-handler variable for ``field_name``: ``JETWORK_WORKER_<HANDLER>_<FIELD>``."""
    general = ENV_VARS[field_name]
    suffix = general.removeprefix("JETWORK_WORKER_").removeprefix("JETWORK_")
    return f"JETWORK_WORKER_{handler.upper().replace('-', '_')}_{suffix}"


WORKER_WIDE_FIELDS: Final = frozenset(
    {"nats_url", "worker_id", "labels", "shutdown_grace", "env_clear", "env_allow"}
)
"""Settings of the whole worker: one connection, one identity, one label set, one shutdown, one
environment for its shell jobs."""
HANDLER_FIELDS: Final = tuple(name for name in ENV_VARS if name not in WORKER_WIDE_FIELDS)
"""Settings a handler's jobs may override: the lease and poll of its consumer (``lease_ttl``,
``poll_interval``), its concurrency within the worker's (``max_concurrent_jobs``), how often its
jobs are renewed and checked (``heartbeat_interval``, ``cancellation_check_interval``), and
its jobs' log and output limits (``log_*``, ``max_*``, ``kill_grace``)."""


def _check_fields(overrides: Mapping[str, Any]) -> None:
    unknown = sorted(set(overrides) - _FIELD_NAMES)
    if unknown:
        raise TypeError(
            f"unknown WorkerConfig field(s): {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_FIELD_NAMES))}"
        )


def _read_env(
    env: Mapping[str, str], candidates: Mapping[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Parse the first set variable of each field's ``candidates``: values, sources, problems."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for name, variables in candidates.items():
        for variable in variables:
            raw = env.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = _PARSERS[name](raw.strip())
            except ValueError as exc:
                problems.append(f"{variable}={raw!r}: {exc}")
            sources[name] = f"{variable}={raw!r}"
            break
    return values, sources, problems


def _worker_wide_variables(env: Mapping[str, str], handler: str) -> list[str]:
    problems = []
    for name in sorted(WORKER_WIDE_FIELDS):
        variable = handler_env_var(handler, name)
        if env.get(variable, "").strip():
            problems.append(
                f"{variable} is set, but {name} is a setting of the whole worker, not of one "
                f"handler: use {ENV_VARS[name]}"
            )
    return problems


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


# --- parsing ----------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?$", re.IGNORECASE)
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^(\d+)\s*(b|kb|kib|mb|mib)?$", re.IGNORECASE)
_SIZE_UNITS: Final = {"b": 1, "kb": 1000, "kib": KIB, "mb": 1000 * 1000, "mib": MIB}


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``1.5``, ``500ms``, ``30s``, ``2m`` or ``1h``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError("not a duration: use seconds (30, 1.5) or one unit (500ms, 30s, 2m, 1h)")
    unit = (match.group(2) or "s").lower()
    return float(match.group(1)) * _DURATION_UNITS[unit]


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64KiB``, ``1MiB``, ``64KB`` or ``1MB``."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError("not a size: use bytes (65536) or a unit (64KiB, 1MiB, 64KB, 1MB)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("not a whole number") from None


def _parse_optional_duration(text: str) -> float | None:
    if text.lower() in {"none", "inf", "infinite", "forever"}:
        return None
    return parse_duration(text)


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_labels(text: str) -> frozenset[str]:
    return frozenset(_split_list(text))


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("not a yes/no value: use 1, true, yes, on or 0, false, no, off")


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(_split_list(text))


_PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "nats_url": str,
    "worker_id": str,
    "labels": _parse_labels,
    "lease_ttl": parse_duration,
    "poll_interval": parse_duration,
    "heartbeat_interval": parse_duration,
    "cancellation_check_interval": parse_duration,
    "log_batch_interval": parse_duration,
    "max_concurrent_jobs": _parse_int,
    "shutdown_grace": _parse_optional_duration,
    "kill_grace": parse_duration,
    "max_output_bytes": parse_size,
    "max_log_line_bytes": parse_size,
    "log_batch_max_lines": _parse_int,
    "log_batch_max_bytes": parse_size,
    "log_buffer_max_lines": _parse_int,
    "log_buffer_max_bytes": parse_size,
    "max_log_bytes": parse_size,
    "env_clear": _parse_bool,
    "env_allow": _parse_names,
}

_FIELD_NAMES: Final = frozenset(f.name for f in fields(WorkerConfig))
assert _FIELD_NAMES == set(ENV_VARS) == set(_PARSERS), "every field needs a variable and a parser"


# --- validation -------------------------------------------------------------------------------

_POSITIVE_SECONDS: Final = (
    "lease_ttl",
    "poll_interval",
    "heartbeat_interval",
    "cancellation_check_interval",
    "log_batch_interval",
)
_POSITIVE_INTS: Final = (
    "max_concurrent_jobs",
    "max_output_bytes",
    "max_log_line_bytes",
    "log_batch_max_lines",
    "log_batch_max_bytes",
    "log_buffer_max_lines",
    "log_buffer_max_bytes",
    "max_log_bytes",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problems(cfg: WorkerConfig) -> list[str]:
    problems: list[str] = []
    servers = _split_list(cfg.nats_url) if isinstance(cfg.nats_url, str) else []
    if not servers:
        problems.append(f"nats_url {cfg.nats_url!r} is empty: give at least one server URL")
    for url in servers:
        if not url.startswith(_URL_SCHEMES):
            problems.append(f"nats_url {url!r} must start with one of {', '.join(_URL_SCHEMES)}")
    if not isinstance(cfg.worker_id, str) or not is_valid_token(cfg.worker_id):
        problems.append(
            f"worker_id {cfg.worker_id!r} is not a valid name: "
            "use 1-128 letters, digits, '_' or '-'"
        )
    problems.extend(_label_problems(cfg.labels))
    for name in _POSITIVE_SECONDS:
        value = getattr(cfg, name)
        if not _is_number(value) or value <= 0:
            problems.append(f"{name} must be a positive number of seconds, got {value!r}")
    for name in _POSITIVE_INTS:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"{name} must be a whole number >= 1, got {value!r}")
    if cfg.shutdown_grace is not None and (
        not _is_number(cfg.shutdown_grace) or cfg.shutdown_grace < 0
    ):
        problems.append(
            f"shutdown_grace must be None or a number of seconds >= 0, got {cfg.shutdown_grace!r}"
        )
    if not _is_number(cfg.kill_grace) or cfg.kill_grace < 0:
        problems.append(f"kill_grace must be a number of seconds >= 0, got {cfg.kill_grace!r}")
    if (
        _is_number(cfg.heartbeat_interval)
        and _is_number(cfg.lease_ttl)
        and cfg.heartbeat_interval >= cfg.lease_ttl
    ):
        problems.append(
            f"heartbeat_interval ({cfg.heartbeat_interval:g}s) must be less than lease_ttl "
            f"({cfg.lease_ttl:g}s), or every job loses its lease between two heartbeats; "
            "a heartbeat at most a third of the lease leaves room for network delays"
        )
    problems.extend(_env_problems(cfg))
    return problems


def _env_problems(cfg: WorkerConfig) -> list[str]:
    problems = []
    if not isinstance(cfg.env_clear, bool):
        problems.append(f"env_clear must be True or False, got {cfg.env_clear!r}")
    bad = [name for name in cfg.env_allow if not isinstance(name, str) or not _ENV_NAME.match(name)]
    if bad:
        problems.append(
            f"env_allow {', '.join(map(repr, bad))}: use variable names (letters, digits, '_', "
            "not starting with a digit), each optionally ending with '*' for a prefix"
        )
    if cfg.env_allow and cfg.env_clear is False:
        problems.append(
            "env_allow is set but env_clear is not: jobs inherit the whole environment anyway; "
            "set env_clear (--env-clear, JETWORK_WORKER_ENV_CLEAR=1) to keep only those"
        )
    return problems


def _label_problems(labels: Iterable[object]) -> list[str]:
    bad = sorted(repr(label) for label in labels if not isinstance(label, str))
    bad += sorted(
        repr(label) for label in labels if isinstance(label, str) and not is_valid_token(label)
    )
    if not bad:
        return []
    return [f"labels {', '.join(bad)} are not valid: use 1-128 letters, digits, '_' or '-' each"]
