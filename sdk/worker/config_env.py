"""The worker settings' environment variables: which variable sets which field (``ENV_VARS``,
per handler ``handler_env_var``), which fields a handler may set (``HANDLER_FIELDS``), and how
their values are parsed (durations, sizes, numbers, lists, yes/no).

``WorkerConfig.from_env`` and ``WorkerConfig.for_handler`` (``sdk.worker.config``) read through
``read_env``; every value that cannot be parsed becomes a problem naming its variable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

ENV_VARS: Final[Mapping[str, str]] = {
    "nats_url": "JETWORK_NATS_URL",
    "worker_id": "JETWORK_WORKER_ID",
    "labels": "JETWORK_WORKER_LABELS",
    "lease_ttl": "JETWORK_WORKER_LEASE_TTL",
    "poll_interval": "JETWORK_WORKER_POLL_INTERVAL",
    "heartbeat_interval": "JETWORK_WORKER_HEARTBEAT_INTERVAL",
    "cancellation_check_interval": "JETWORK_WORKER_CANCELLATION_CHECK_INTERVAL",
    "claim_window": "JETWORK_WORKER_CLAIM_WINDOW",
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
    "namespace": "JETWORK_NAMESPACE",
}
"""Field name → general environment variable."""


def handler_env_var(handler: str, field_name: str) -> str:
    """The per-handler variable for ``field_name``: ``JETWORK_WORKER_<HANDLER>_<FIELD>``."""
    general = ENV_VARS[field_name]
    suffix = general.removeprefix("JETWORK_WORKER_").removeprefix("JETWORK_")
    return f"JETWORK_WORKER_{handler.upper().replace('-', '_')}_{suffix}"


WORKER_WIDE_FIELDS: Final = frozenset(
    {"nats_url", "worker_id", "labels", "shutdown_grace", "env_clear", "env_allow", "namespace"}
)
"""Settings of the whole worker: one connection, one identity, one label set, one shutdown, one
environment for its shell jobs."""
HANDLER_FIELDS: Final = tuple(name for name in ENV_VARS if name not in WORKER_WIDE_FIELDS)
"""Settings a handler's jobs may override: the lease and poll of its consumer (``lease_ttl``,
``poll_interval``), its concurrency within the worker's (``max_concurrent_jobs``), how often its
jobs are renewed and checked (``heartbeat_interval``, ``cancellation_check_interval``,
``claim_window``), and
its jobs' log and output limits (``log_*``, ``max_*``, ``kill_grace``)."""


def read_env(
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
                values[name] = PARSERS[name](raw.strip())
            except ValueError as exc:
                problems.append(f"{variable}={raw!r}: {exc}")
            sources[name] = f"{variable}={raw!r}"
            break
    return values, sources, problems


def worker_wide_variables(env: Mapping[str, str], handler: str) -> list[str]:
    problems = []
    for name in sorted(WORKER_WIDE_FIELDS):
        variable = handler_env_var(handler, name)
        if env.get(variable, "").strip():
            problems.append(
                f"{variable} is set, but {name} is a setting of the whole worker, not of one "
                f"handler: use {ENV_VARS[name]}"
            )
    return problems


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


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_labels(text: str) -> frozenset[str]:
    return frozenset(split_list(text))


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("not a yes/no value: use 1, true, yes, on or 0, false, no, off")


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(split_list(text))


PARSERS: Final[Mapping[str, Callable[[str], Any]]] = {
    "nats_url": str,
    "worker_id": str,
    "labels": _parse_labels,
    "lease_ttl": parse_duration,
    "poll_interval": parse_duration,
    "heartbeat_interval": parse_duration,
    "cancellation_check_interval": parse_duration,
    "claim_window": parse_duration,
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
    "namespace": str,
}
"""Field name → the parser of its variables' values (``ValueError`` saying what is expected)."""
