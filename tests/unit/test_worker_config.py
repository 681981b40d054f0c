from __future__ import annotations

import asyncio
import dataclasses

import pytest

from events.dispatch import LabelSet
from events.errors import JetworkError
from sdk.worker import Worker
from sdk.worker.config import (
    ENV_VARS,
    HANDLER_FIELDS,
    KIB,
    WORKER_WIDE_FIELDS,
    InvalidWorkerConfig,
    WorkerConfig,
    handler_env_var,
    parse_duration,
    parse_size,
)
from sdk.worker.executors import Executor
from sdk.worker.job_context import JobContext
from sdk.worker.pull import Slots, handler_of, lanes_for


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
        "JETWORK_WORKER_CLAIM_WINDOW": "20ms",
        "JETWORK_WORKER_LOG_BATCH_INTERVAL": "250ms",
        "JETWORK_WORKER_SHUTDOWN_GRACE": "2m",
        "JETWORK_WORKER_KILL_GRACE": "3",
        "JETWORK_WORKER_MAX_OUTPUT_BYTES": "128KiB",
        "JETWORK_WORKER_MAX_LOG_LINE_BYTES": "4096",
        "JETWORK_WORKER_LOG_BATCH_MAX_LINES": "50",
        "JETWORK_WORKER_LOG_BATCH_MAX_BYTES": "1MiB",
        "JETWORK_WORKER_LOG_BUFFER_MAX_LINES": "100",
        "JETWORK_WORKER_LOG_BUFFER_MAX_BYTES": "2MB",
        "JETWORK_WORKER_MAX_LOG_BYTES": "10MiB",
        "JETWORK_WORKER_ENV_CLEAR": "yes",
        "JETWORK_WORKER_ENV_ALLOW": "AWS_*, DOCKER_HOST",
        "JETWORK_NAMESPACE": "team-a",
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
        claim_window=0.02,
        log_batch_interval=0.25,
        shutdown_grace=120.0,
        kill_grace=3.0,
        max_output_bytes=128 * KIB,
        max_log_line_bytes=4096,
        log_batch_max_lines=50,
        log_batch_max_bytes=1024 * KIB,
        log_buffer_max_lines=100,
        log_buffer_max_bytes=2_000_000,
        max_log_bytes=10 * 1024 * KIB,
        env_clear=True,
        env_allow=("AWS_*", "DOCKER_HOST"),
        namespace="team-a",
    )


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"JETWORK_WORKER_ENV_CLEAR": "maybe"}, "JETWORK_WORKER_ENV_CLEAR='maybe': not a yes/no"),
        ({"JETWORK_WORKER_CLAIM_WINDOW": "20s"}, "claim_window (20s) must be less than half"),
        ({"JETWORK_WORKER_ENV_ALLOW": "HOME"}, "env_allow is set but env_clear is not"),
        (
            {"JETWORK_WORKER_ENV_CLEAR": "1", "JETWORK_WORKER_ENV_ALLOW": "OK,1BAD,A-B"},
            "env_allow '1BAD', 'A-B': use variable names",
        ),
    ],
)
def test_bad_environment_settings_are_named(env: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidWorkerConfig) as raised:
        WorkerConfig.from_env(env)
    assert problem in str(raised.value)


def test_the_environment_is_a_setting_of_the_whole_worker() -> None:
    with pytest.raises(InvalidWorkerConfig, match="JETWORK_WORKER_RESIZE_ENV_CLEAR is set"):
        WorkerConfig().for_handler("resize", {"JETWORK_WORKER_RESIZE_ENV_CLEAR": "1"})


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


# --- per-handler settings ---------------------------------------------------------------------


def test_every_field_is_either_per_handler_or_worker_wide() -> None:
    assert set(HANDLER_FIELDS) | WORKER_WIDE_FIELDS == set(ENV_VARS)
    assert not set(HANDLER_FIELDS) & WORKER_WIDE_FIELDS
    assert {"lease_ttl", "heartbeat_interval", "max_concurrent_jobs"} <= set(HANDLER_FIELDS)
    assert "cancellation_check_interval" in HANDLER_FIELDS


def test_for_handler_applies_the_handlers_variables_over_the_config() -> None:
    base = WorkerConfig(
        worker_id="w-1", labels=frozenset({"linux"}), lease_ttl=60, max_concurrent_jobs=8
    )
    env = {
        "JETWORK_WORKER_RESIZE_IMAGE_LEASE_TTL": "5m",
        "JETWORK_WORKER_RESIZE_IMAGE_HEARTBEAT_INTERVAL": "1m",
        "JETWORK_WORKER_RESIZE_IMAGE_CONCURRENCY": "2",
        "JETWORK_WORKER_RESIZE_IMAGE_CANCELLATION_CHECK_INTERVAL": "250ms",
        "JETWORK_WORKER_LEASE_TTL": "10",  # general: the config already decided those
        "JETWORK_WORKER_OTHER_LEASE_TTL": "7",
    }
    resize = base.for_handler("resize-image", env)
    assert (resize.lease_ttl, resize.heartbeat_interval) == (300.0, 60.0)
    assert (resize.max_concurrent_jobs, resize.cancellation_check_interval) == (2, 0.25)
    assert (resize.worker_id, resize.labels) == ("w-1", frozenset({"linux"}))
    assert resize.poll_interval == base.poll_interval
    assert base.for_handler("plain", env) == base


def test_for_handler_keywords_beat_the_handlers_variables() -> None:
    env = {"JETWORK_WORKER_X_LEASE_TTL": "90", "JETWORK_WORKER_X_CONCURRENCY": "3"}
    cfg = WorkerConfig().for_handler("x", env, lease_ttl=45.0)
    assert (cfg.lease_ttl, cfg.max_concurrent_jobs) == (45.0, 3)


def test_for_handler_agrees_with_from_env_for_the_handler() -> None:
    env = {
        "JETWORK_WORKER_ID": "w-2",
        "JETWORK_WORKER_LEASE_TTL": "60",
        "JETWORK_WORKER_CONCURRENCY": "4",
        "JETWORK_WORKER_GPU_LEASE_TTL": "2m",
        "JETWORK_WORKER_GPU_LOG_BATCH_INTERVAL": "1s",
    }
    assert WorkerConfig.from_env(env).for_handler("gpu", env) == WorkerConfig.from_env(
        env, handler="gpu"
    )


@pytest.mark.parametrize("field_name", sorted(WORKER_WIDE_FIELDS))
def test_a_worker_wide_setting_cannot_be_set_per_handler(field_name: str) -> None:
    variable = handler_env_var("resize", field_name)
    env = {variable: "x"}
    with pytest.raises(InvalidWorkerConfig, match=f"{variable} is set, but {field_name} is"):
        WorkerConfig().for_handler("resize", env)
    with pytest.raises(InvalidWorkerConfig, match=f"use {ENV_VARS[field_name]}"):
        WorkerConfig.from_env(env, handler="resize")
    with pytest.raises(InvalidWorkerConfig, match="setting of the whole worker"):
        WorkerConfig().for_handler("resize", {}, **{field_name: "x"})


def test_an_inconsistent_handler_config_names_the_handler_and_the_variable() -> None:
    base = WorkerConfig(lease_ttl=30, heartbeat_interval=10)
    with pytest.raises(InvalidWorkerConfig) as info:
        base.for_handler("fast", {"JETWORK_WORKER_FAST_LEASE_TTL": "5s"})
    message = str(info.value)
    assert "handler 'fast': heartbeat_interval (10s) must be less than lease_ttl (5s)" in message
    assert "JETWORK_WORKER_FAST_LEASE_TTL='5s'" in message


def test_an_unparseable_handler_variable_is_named() -> None:
    with pytest.raises(InvalidWorkerConfig, match="JETWORK_WORKER_FAST_CONCURRENCY='lots'"):
        WorkerConfig().for_handler("fast", {"JETWORK_WORKER_FAST_CONCURRENCY": "lots"})
    with pytest.raises(TypeError, match="unknown WorkerConfig field"):
        WorkerConfig().for_handler("fast", {}, lease=5)


def test_a_worker_resolves_each_handlers_config() -> None:
    env = {"JETWORK_WORKER_RESIZE_LEASE_TTL": "2m", "JETWORK_WORKER_RESIZE_CONCURRENCY": "1"}
    worker = Worker(WorkerConfig(max_concurrent_jobs=4), environ=env)

    @worker.job("resize")
    async def resize(ctx: JobContext) -> None: ...

    @worker.job("thumb", lease_ttl=90.0, heartbeat_interval=20.0)
    async def thumb(ctx: JobContext) -> None: ...

    assert (worker.handler_config("resize").lease_ttl, worker.config.lease_ttl) == (120.0, 30.0)
    assert worker.handler_config("resize").max_concurrent_jobs == 1
    thumb_config = worker.handler_config("thumb")
    assert (thumb_config.lease_ttl, thumb_config.heartbeat_interval) == (90.0, 20.0)
    assert thumb_config.max_concurrent_jobs == 4


def test_bad_handler_settings_fail_when_the_decorator_is_applied() -> None:
    worker = Worker(WorkerConfig(), environ={"JETWORK_WORKER_SLOW_LEASE_TTL": "5"})
    with pytest.raises(InvalidWorkerConfig, match="handler 'slow'"):
        worker.job("slow")
    with pytest.raises(InvalidWorkerConfig, match="handler 'fast'"):
        worker.job("fast", lease_ttl=1.0)
    assert len(worker.registry) == 0


def test_a_label_set_names_at_most_one_handler() -> None:
    assert handler_of(LabelSet.of({"linux", "@resize"})) == "resize"
    assert handler_of(LabelSet.of({"linux", "gpu"})) is None
    assert handler_of(LabelSet.of(())) is None


def _executor(config: WorkerConfig) -> Executor:
    return object()  # type: ignore[return-value]  # lanes only carry it


def test_lanes_give_each_handler_its_settings_and_bounded_slots() -> None:
    base = WorkerConfig(max_concurrent_jobs=4)
    handlers = {
        "one": base.replace(max_concurrent_jobs=1, lease_ttl=60.0),
        "same": base,
        "more": base.replace(max_concurrent_jobs=9),
    }
    slots = Slots(4)
    lanes = lanes_for(base, handlers, slots=slots, executor=_executor)
    assert lanes[None].config == base and lanes[None].slots is slots
    assert lanes["one"].config.lease_ttl == 60.0
    assert lanes["one"].slots.size == 1
    assert lanes["same"].slots is slots
    assert lanes["more"].slots is slots  # the worker's bound holds


def test_a_handlers_slots_are_taken_within_the_workers() -> None:
    worker = Slots(2)
    handler = Slots(1, within=worker)
    assert handler.try_take()
    assert (handler.free, worker.free) == (0, 1)
    assert not handler.try_take()  # its own bound, though the worker has one left
    assert worker.try_take()  # another lane's job takes the worker's last slot
    handler.release()
    assert (handler.free, worker.free) == (1, 1)
    assert worker.try_take()
    assert handler.free == 0  # the worker's bound holds too
    assert not handler.try_take() and handler.used == 0
    worker.release()
    assert handler.try_take() and worker.used == 2
    worker.release()
    handler.release()
    handler.release()  # a second release frees nothing more
    assert (handler.used, worker.used) == (0, 0)


async def test_a_handlers_slots_wait_for_the_worker_to_have_one() -> None:
    worker = Slots(1)
    handler = Slots(3, within=worker)
    assert worker.try_take()
    waiting = asyncio.ensure_future(handler.wait_free())
    await asyncio.sleep(0)
    assert not waiting.done()
    worker.release()
    await asyncio.wait_for(waiting, 1)


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
