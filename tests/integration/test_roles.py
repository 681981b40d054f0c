"""Least-privilege NATS roles (events/roles.py) on a real nats-server: what each may and may not do.

A refusal is observed as NATS reports it: the server answers a publish or subscribe it forbids
with ``-ERR 'Permissions Violation …'``, which nats-py hands to the connection's error callback.
The tests wait for that report (never for time to pass); an allowed action is shown by its
effect (a stored event, a stream's info, a created consumer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client as NATS

import nats
from events import subjects
from events.roles import ROLES, inbox_prefix, permissions, render_authorization
from events.topology import ensure_topology
from sdk.auth_setup import RoleSecrets
from sdk.embedded_server import EmbeddedServer
from tests.eventually import assert_eventually

REPO = Path(__file__).resolve().parents[2]
WF = "wf-roles-test"
P = subjects.partition_of(WF)


class Connected:
    """A connection as one role, remembering the permission violations the server reported."""

    def __init__(self, nc: NATS, refused: list[str]) -> None:
        self.nc, self.refused = nc, refused

    async def refuses(self, subject: str, what: str = "publish") -> None:
        def reported() -> bool:
            return any(what in r and subject.lower() in r.lower() for r in self.refused)

        await assert_eventually(reported, timeout=5, interval=0.02)

    async def refuses_publish(self, subject: str, payload: bytes = b"{}") -> None:
        await self.nc.publish(subject, payload)
        await self.nc.flush()
        await self.refuses(subject)

    async def refuses_request(self, subject: str, payload: bytes = b"") -> None:
        with pytest.raises(Exception):  # noqa: B017,PT011 - the request is never answered
            await self.nc.request(subject, payload, timeout=0.5)
        await self.refuses(subject)

    async def refuses_subscribe(self, subject: str) -> None:
        await self.nc.subscribe(subject)
        await self.nc.flush()
        await self.refuses(subject, "subscription")

    async def api(
        self, subject: str, payload: dict[str, object] | None = None
    ) -> dict[str, object]:
        body = orjson.dumps(payload) if payload is not None else b""
        reply = await self.nc.request(subject, body, timeout=5)
        answer: dict[str, object] = orjson.loads(reply.data)
        return answer


ConnectAs = Callable[[str], Awaitable["Connected"]]


@pytest.fixture(scope="module")
def secrets(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedServer, RoleSecrets]]:
    root = tmp_path_factory.mktemp("roles")
    roles = RoleSecrets.generate(root / "auth")
    server = EmbeddedServer(data_dir=root / "nats", extra_config=roles.server_config())
    with server:
        yield server, roles


@pytest.fixture
async def connect_as(
    secrets: tuple[EmbeddedServer, RoleSecrets],
) -> AsyncIterator[ConnectAs]:
    server, roles = secrets
    opened: list[NATS] = []

    async def connect(role: str) -> Connected:
        refused: list[str] = []

        async def on_error(error: Exception) -> None:
            refused.append(str(error))

        auth = roles.auth(role)
        nc = await nats.connect(
            server.url, user=role, password=roles.passwords[role],
            inbox_prefix=auth.inbox or "_INBOX", error_cb=on_error, allow_reconnect=False,
        )  # fmt: skip
        opened.append(nc)
        return Connected(nc, refused)

    admin = await connect("admin")
    await ensure_topology(admin.nc.jetstream())
    yield connect
    for nc in opened:
        await nc.close()


def job_event(job: str, event: str) -> str:
    return f"evt.{P}.{WF}.job.{job}.{event}"


async def test_a_worker_appends_job_results_and_nothing_else(connect_as: ConnectAs) -> None:
    worker = await connect_as("worker")
    js = worker.nc.jetstream()
    ack = await js.publish(job_event("a", "JobStarted"), b"{}")
    assert ack.stream == subjects.EVENTS_STREAM
    await worker.refuses_publish(f"evt.{P}.{WF}.wf.WorkflowStarted")
    await worker.refuses_publish(job_event("a", "JobQueued.ls"))
    await worker.refuses_publish(job_event("a", "JobQueued.ls.p9"))
    await worker.refuses_publish(f"cmd.{P}.start.{WF}")
    await worker.refuses_publish(f"cmdsched.{P}.x")


async def test_a_worker_cannot_delete_or_purge_streams_or_touch_the_engines_consumers(
    connect_as: ConnectAs,
) -> None:
    worker = await connect_as("worker")
    await worker.refuses_request(f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}")
    await worker.refuses_request(f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}")
    await worker.refuses_request(f"$JS.API.STREAM.UPDATE.{subjects.EVENTS_STREAM}")
    engine_consumer = f"engine-p{P}-evt"
    await worker.refuses_request(
        f"$JS.API.CONSUMER.MSG.NEXT.{subjects.EVENTS_STREAM}.{engine_consumer}"
    )
    await worker.refuses_request(
        f"$JS.API.CONSUMER.CREATE.{subjects.EVENTS_STREAM}.{engine_consumer}."
        f"{subjects.queued_for('x')}"
    )
    # A consumer of anything but a label set's dispatch is refused too.
    await worker.refuses_request(f"$JS.API.CONSUMER.CREATE.{subjects.EVENTS_STREAM}.spy.evt.>")


async def test_a_worker_creates_and_pulls_a_label_set_consumer(connect_as: ConnectAs) -> None:
    from events.dispatch import LabelSet
    from sdk.worker.consumers import ensure_consumer

    worker = await connect_as("worker")
    labelset = LabelSet.of(["roles-test"])
    assert await ensure_consumer(worker.nc, labelset, lease_ttl=30) == 30
    info = await worker.api(f"$JS.API.CONSUMER.INFO.{subjects.EVENTS_STREAM}.{labelset.consumer}")
    assert info["name"] == labelset.consumer
    # A priority level of the label set (events/priority.py) is a consumer of its own.
    level = LabelSet.of(["roles-test"], level=9)
    assert await ensure_consumer(worker.nc, level, lease_ttl=30) == 30
    info = await worker.api(f"$JS.API.CONSUMER.INFO.{subjects.EVENTS_STREAM}.{level.consumer}")
    assert info["name"] == level.consumer
    assert worker.refused == []


async def test_no_role_reads_another_roles_inbox(connect_as: ConnectAs) -> None:
    worker = await connect_as("worker")
    await worker.refuses_subscribe(f"{inbox_prefix('client')}.>")
    await worker.refuses_subscribe("_INBOX.>")
    client = await connect_as("client")
    await client.refuses_subscribe(f"{inbox_prefix('engine')}.>")


async def test_a_client_issues_commands_and_reads_but_cannot_append_events(
    connect_as: ConnectAs,
) -> None:
    client = await connect_as("client")
    js = client.nc.jetstream()
    ack = await js.publish(f"cmd.{P}.cancel.{WF}", b"{}")
    assert ack.stream == subjects.COMMANDS_STREAM
    info = await js.stream_info(subjects.EVENTS_STREAM)
    assert info.config.name == subjects.EVENTS_STREAM
    await client.refuses_publish(job_event("a", "JobSucceeded"))
    await client.refuses_publish(f"evt.{P}.{WF}.wf.WorkflowCancelled")
    await client.refuses_request(f"$JS.API.STREAM.DELETE.{subjects.COMMANDS_STREAM}")


async def test_the_projector_writes_views_but_appends_no_event_and_issues_no_command(
    connect_as: ConnectAs,
) -> None:
    projector = await connect_as("projector")
    kv = await projector.nc.jetstream().key_value(subjects.KV_WORKFLOWS)
    await kv.put("roles-test", b"{}")
    await projector.refuses_publish(job_event("a", "JobSucceeded"))
    await projector.refuses_publish(f"cmd.{P}.start.{WF}")
    await projector.refuses_request(f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}")


async def test_the_engine_appends_but_cannot_delete_streams(connect_as: ConnectAs) -> None:
    engine = await connect_as("engine")
    ack = await engine.nc.jetstream().publish(f"evt.{P}.{WF}.wf.WorkflowStarted", b"{}")
    assert ack.stream == subjects.EVENTS_STREAM
    await engine.refuses_request(f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}")
    await engine.refuses_request(f"$JS.API.STREAM.MSG.DELETE.{subjects.EVENTS_STREAM}")


async def test_the_gateway_appends_results_for_its_http_workers_but_queues_nothing(
    connect_as: ConnectAs,
) -> None:
    gateway = await connect_as("gateway")
    ack = await gateway.nc.jetstream().publish(job_event("b", "JobSucceeded"), b"{}")
    assert ack.stream == subjects.EVENTS_STREAM
    await gateway.refuses_publish(job_event("b", "JobQueued.ls"))
    await gateway.refuses_publish(f"evt.{P}.{WF}.wf.WorkflowSucceeded")
    await gateway.refuses_request(f"$JS.API.STREAM.DELETE.{subjects.EVENTS_STREAM}")


async def test_the_admin_may_change_streams(connect_as: ConnectAs) -> None:
    admin = await connect_as("admin")
    answer = await admin.api("$JS.API.STREAM.CREATE.JW_ROLES_SCRATCH", {
        "name": "JW_ROLES_SCRATCH", "subjects": ["roles-scratch.>"], "storage": "memory",
    })  # fmt: skip
    assert "error" not in answer, answer
    deleted = await admin.api("$JS.API.STREAM.DELETE.JW_ROLES_SCRATCH")
    assert deleted.get("success") is True


def test_the_shipped_roles_file_is_the_one_jetwork_runs_with() -> None:
    """nats/roles.conf is events/roles.py rendered with placeholder passwords (regenerate it
    with ``python -m events.roles > nats/roles.conf``)."""
    shipped = (REPO / "nats" / "roles.conf").read_text()
    placeholders = {role: f"change-me-{role}" for role in ROLES}
    assert shipped.endswith(render_authorization(placeholders))


def test_every_role_but_the_admin_is_denied_stream_changes() -> None:
    for role, perms in permissions().items():
        if perms is None:
            assert role == "admin"
            continue
        assert "$JS.API.STREAM.DELETE.>" in perms.deny_publish, role
        assert "$JS.API.STREAM.PURGE.>" in perms.deny_publish, role


async def test_a_client_sets_a_rate_limit_and_a_worker_counts_against_it(
    connect_as: ConnectAs,
) -> None:
    from events.catalog import JobSpec
    from sdk.client import Client
    from sdk.worker.rate_limits import RateLimiter

    client, worker = await connect_as("client"), await connect_as("worker")
    await Client(client.nc).set_rate_limit(handler="roles-test", limit=1, per=3600)
    limiter = RateLimiter()
    await limiter.start(worker.nc.jetstream())
    spec = JobSpec(uses="roles-test")
    assert await limiter.admit(spec) is None  # counted by the worker's role
    assert await limiter.admit(spec) is not None  # the window is full
    await limiter.stop()
    assert worker.refused == [] and client.refused == []
