from __future__ import annotations

import dataclasses

import pytest

from events.errors import JetworkError
from sdk.worker_config import (
    ENV_VARS,
    KIB,
    InvalidWorkerConfig,
    WorkerConfig,
    handler_env_var,
    parse_duration,
    parse_size,
)


def test_defaults_match_what_worker_users_expect() -> None:
    cfg = WorkerConfig()
    assert cfg.nats_url == "nats://127.0.0.1:4222"
    assert cfg.labels == frozenset()
    assert (cfg.lease_ttl, cfg.poll_interval, cfg.heartbeat_interval) == (30.0, 2.0, 10.0)
    assert (cfg.cancellation_check_interval, cfg.log_batch_interval) == (2.0, 0.5)
    assert cfg.max_concurrent_jobs == 1
    assert cfg.shutdown_grace is None
    assert cfg.max_output_bytes == 64 * KIB
    assert cfg.max_log_line_bytes == 16 * KIB


def test_worker_id_is_generated_and_unique() -> None:
    a, b = WorkerConfig(), WorkerConfig()
    assert a.worker_id.startswith("w-")
    assert a.worker_id != b.worker_id


def test_config_is_frozen() -> None:
    cfg = WorkerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lease_ttl = 1.0  # type: ignore[misc]


def test_labels_given_as_a_list_become_a_frozenset() -> None:
    cfg = WorkerConfig(labels=["linux", "docker", "linux"])  # type: ignore[arg-type]
    assert cfg.labels == frozenset({"linux", "docker"})


def test_heartbeat_not_below_lease_is_rejected_naming_both_values() -> None:
    with pytest.raises(InvalidWorkerConfig) as info:
        WorkerConfig(lease_ttl=10, heartbeat_interval=10)
    message = str(info.value)
    assert "heartbeat_interval (10s) must be less than lease_ttl (10s)" in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, JetworkError)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidWorkerConfig) as info:
        WorkerConfig(
            poll_interval=0,
            max_concurrent_jobs=0,
            labels=frozenset({"gpu", "bad label", "a.b"}),
            nats_url="http://x",
        )
    problems = info.value.problems
    assert any("poll_interval must be a positive number" in p for p in problems)
    assert any("max_concurrent_jobs must be a whole number >= 1, got 0" in p for p in problems)
    assert any("'a.b'" in p and "'bad label'" in p and "'gpu'" not in p for p in problems)
    assert any("nats_url 'http://x' must start with" in p for p in problems)


@pytest.mark.parametrize(
    "changes",
    [
        {"lease_ttl": -1},
        {"log_batch_interval": 0},
        {"cancellation_check_interval": float("nan")},
        {"max_concurrent_jobs": True},
        {"max_output_bytes": 0},
        {"shutdown_grace": -5},
        {"kill_grace": -1},
        {"worker_id": "has.dot"},
        {"nats_url": ""},
    ],
)
def test_bad_values_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidWorkerConfig):
        WorkerConfig(**changes)  # type: ignore[arg-type]


def test_replace_validates_again() -> None:
    cfg = WorkerConfig(lease_ttl=60, heartbeat_interval=20)
    assert cfg.replace(lease_ttl=90).lease_ttl == 90
    with pytest.raises(InvalidWorkerConfig, match="must be less than lease_ttl"):
        cfg.replace(lease_ttl=15)


def test_several_servers_in_one_url() -> None:
    cfg = WorkerConfig(nats_url="nats://a:4222, nats://b:4222")
    assert cfg.servers == ["nats://a:4222", "nats://b:4222"]


# --- environment ------------------------------------------------------------------------------


def test_from_env_reads_every_general_variable() -> None:
    env = {
        "JETWORK_NATS_URL": "nats://n1:4222",
        "JETWORK_WORKER_ID": "w-test",
        "JETWORK_WORKER_LABELS": "linux, docker,,gpu",
        "JETWORK_WORKER_CONCURRENCY": "4",
        "JETWORK_WORKER_LEASE_TTL": "60",
        "JETWORK_WORKER_POLL_INTERVAL": "500ms",
        "JETWORK_WORKER_HEARTBEAT_INTERVAL": "20s",
        "JETWORK_WORKER_CANCELLATION_CHECK_INTERVAL": "1.5",
        "JETWORK_WORKER_LOG_BATCH_INTERVAL": "250ms",
        "JETWORK_WORKER_SHUTDOWN_GRACE": "2m",
        "JETWORK_WORKER_KILL_GRACE": "3",
        "JETWORK_WORKER_MAX_OUTPUT_BYTES": "128KiB",
        "JETWORK_WORKER_MAX_LOG_LINE_BYTES": "4096",
        "JETWORK_WORKER_LOG_BATCH_MAX_LINES": "50",
        "JETWORK_WORKER_LOG_BATCH_MAX_BYTES": "1MiB",
        "JETWORK_WORKER_LOG_BUFFER_MAX_LINES": "100",
        "JETWORK_WORKER_LOG_BUFFER_MAX_BYTES": "2MB",
    }
    assert set(env) == set(ENV_VARS.values())
    cfg = WorkerConfig.from_env(env)
    assert cfg == WorkerConfig(
        nats_url="nats://n1:4222",
        worker_id="w-test",
        labels=frozenset({"linux", "docker", "gpu"}),
        max_concurrent_jobs=4,
        lease_ttl=60.0,
        poll_interval=0.5,
        heartbeat_interval=20.0,
        cancellation_check_interval=1.5,
        log_batch_interval=0.25,
        shutdown_grace=120.0,
        kill_grace=3.0,
        max_output_bytes=128 * KIB,
        max_log_line_bytes=4096,
        log_batch_max_lines=50,
        log_batch_max_bytes=1024 * KIB,
        log_buffer_max_lines=100,
        log_buffer_max_bytes=2_000_000,
    )


def test_from_env_with_nothing_set_gives_defaults() -> None:
    cfg = WorkerConfig.from_env({})
    assert dataclasses.replace(cfg, worker_id="w-x") == WorkerConfig(worker_id="w-x")


def test_blank_variables_count_as_unset() -> None:
    assert WorkerConfig.from_env({"JETWORK_WORKER_LEASE_TTL": "  "}).lease_ttl == 30.0


def test_per_handler_variables_beat_general_ones() -> None:
    env = {
        "JETWORK_WORKER_LEASE_TTL": "60",
        "JETWORK_WORKER_RESIZE_IMAGE_LEASE_TTL": "5m",
        "JETWORK_WORKER_CONCURRENCY": "2",
        "JETWORK_WORKER_OTHER_CONCURRENCY": "9",
    }
    resize = WorkerConfig.from_env(env, handler="resize-image")
    assert resize.lease_ttl == 300.0
    assert resize.max_concurrent_jobs == 2  # general value where no per-handler one exists
    assert WorkerConfig.from_env(env).lease_ttl == 60.0
    assert WorkerConfig.from_env(env, handler="other").max_concurrent_jobs == 9


def test_explicit_overrides_beat_the_environment() -> None:
    env = {"JETWORK_WORKER_LEASE_TTL": "60", "JETWORK_WORKER_X_LEASE_TTL": "90"}
    cfg = WorkerConfig.from_env(env, handler="x", lease_ttl=45.0)
    assert cfg.lease_ttl == 45.0


def test_handler_variable_names() -> None:
    assert handler_env_var("resize-image", "lease_ttl") == "JETWORK_WORKER_RESIZE_IMAGE_LEASE_TTL"
    assert handler_env_var("gpu", "max_concurrent_jobs") == "JETWORK_WORKER_GPU_CONCURRENCY"
    assert handler_env_var("gpu", "nats_url") == "JETWORK_WORKER_GPU_NATS_URL"


def test_unparseable_variable_is_named_with_its_value() -> None:
    with pytest.raises(InvalidWorkerConfig) as info:
        WorkerConfig.from_env(
            {"JETWORK_WORKER_LEASE_TTL": "soon", "JETWORK_WORKER_CONCURRENCY": "four"}
        )
    message = str(info.value)
    assert "JETWORK_WORKER_LEASE_TTL='soon': not a duration" in message
    assert "JETWORK_WORKER_CONCURRENCY='four': not a whole number" in message


def test_inconsistent_environment_names_the_variables_it_came_from() -> None:
    env = {"JETWORK_WORKER_LEASE_TTL": "5", "JETWORK_WORKER_HEARTBEAT_INTERVAL": "10"}
    with pytest.raises(InvalidWorkerConfig) as info:
        WorkerConfig.from_env(env)
    message = str(info.value)
    assert "heartbeat_interval (10s) must be less than lease_ttl (5s)" in message
    assert "JETWORK_WORKER_LEASE_TTL='5'" in message
    assert "JETWORK_WORKER_HEARTBEAT_INTERVAL='10'" in message


def test_per_handler_heartbeat_against_general_lease_is_checked() -> None:
    env = {"JETWORK_WORKER_LEASE_TTL": "20", "JETWORK_WORKER_SLOW_HEARTBEAT_INTERVAL": "30"}
    assert WorkerConfig.from_env(env).lease_ttl == 20
    with pytest.raises(InvalidWorkerConfig, match="JETWORK_WORKER_SLOW_HEARTBEAT_INTERVAL='30'"):
        WorkerConfig.from_env(env, handler="slow")


def test_bad_labels_from_env_are_rejected() -> None:
    with pytest.raises(InvalidWorkerConfig, match=r"labels 'gp\*u'"):
        WorkerConfig.from_env({"JETWORK_WORKER_LABELS": "linux,gp*u"})


def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown WorkerConfig field"):
        WorkerConfig.from_env({}, lease=5)


def test_shutdown_grace_none_from_env() -> None:
    env = {"JETWORK_WORKER_SHUTDOWN_GRACE": "none"}
    assert WorkerConfig.from_env(env).shutdown_grace is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-1", "1d", "1m30s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("100", 100), ("64KiB", 65536), ("64kb", 64000), ("1MiB", 1 << 20), ("1MB", 10**6)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size
