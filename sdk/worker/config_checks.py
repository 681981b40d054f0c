"""Validating worker settings: every problem of a ``WorkerConfig`` at once, each naming its field
and what it expects (``WorkerConfig.__post_init__`` raises them as ``InvalidWorkerConfig``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from events import namespaces
from events.subjects import is_valid_token
from sdk.worker.config_env import split_list

if TYPE_CHECKING:
    from sdk.worker.config import WorkerConfig

_URL_SCHEMES: Final = ("nats://", "tls://", "ws://", "wss://")
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


def config_problems(cfg: WorkerConfig) -> list[str]:
    problems: list[str] = []
    servers = split_list(cfg.nats_url) if isinstance(cfg.nats_url, str) else []
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
    try:
        namespaces.require(cfg.namespace)
    except namespaces.InvalidNamespace as exc:
        problems.append(str(exc))
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
    if not _is_number(cfg.claim_window) or cfg.claim_window < 0:
        problems.append(f"claim_window must be a number of seconds >= 0, got {cfg.claim_window!r}")
    elif _is_number(cfg.lease_ttl) and cfg.claim_window >= cfg.lease_ttl / 2:
        problems.append(
            f"claim_window ({cfg.claim_window:g}s) must be less than half of lease_ttl "
            f"({cfg.lease_ttl:g}s): a run's claim must be in the log long before its lease can end"
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
