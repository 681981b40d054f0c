"""Least-privilege NATS roles: what each kind of jetwork process may publish and subscribe to.

Pure data and a renderer for nats-server's ``authorization`` block (``jetwork server --auth``
writes it with a fresh password per role; ``nats/roles.conf`` is the same, for servers you run
yourself). Every role has an inbox prefix of its own (``_INBOX_<role>``, nats-py's
``inbox_prefix``), so no role can read the replies meant for another.

What the roles guarantee (docs/reliability.md, "Threat model"): only the engine appends
workflow events and queues jobs; a worker appends only job results and claims, reads and
consumes only label-set consumers (a dispatch filter), and cannot issue commands, delete or purge a
stream, or touch another role's inbox; a client issues commands and reads, and cannot append
events; nobody but the admin creates, changes, deletes or purges streams.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from events import subjects

ROLES: Final = ("admin", "engine", "projector", "worker", "client", "gateway")

# The events a worker appends: a claim, and what an attempt's result decides (actors/job.py).
_WORKER_EVENTS: Final = (
    "JobStarted",
    "JobSucceeded",
    "JobFailed",
    "JobRetryScheduled",
    "JobCancelled",
    "JobResultRejected",
)
_STREAM_ADMIN: Final = (
    "$JS.API.STREAM.CREATE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    f"$JS.API.STREAM.MSG.DELETE.{subjects.EVENTS_STREAM}",
)
_READS: Final = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.>",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.STREAM.MSG.GET.>",
    "$JS.API.DIRECT.GET.>",
)


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()
    deny_subscribe: tuple[str, ...] = ()
    # Roles whose reply inboxes this one may publish to (answers to commands sent through the
    # commands stream, which carry their reply subject in a header: not a core request).
    answers: tuple[str, ...] = ()


def inbox_prefix(role: str) -> str:
    """The role's reply inboxes: ``_INBOX_<role>`` (the admin keeps nats-py's ``_INBOX``)."""
    return "_INBOX" if role == "admin" else f"_INBOX_{role}"


def _dispatch_consumers() -> tuple[str, ...]:
    """Create, read, pull from and ack label-set consumers: consumers of the events stream whose
    filter is a label set's ``JobQueued`` subject (the filter is in the create subject:
    ``sdk/worker/consumers.py``). NATS wildcards match whole tokens, so consumer names cannot be
    matched by their ``ls-`` prefix; the engine's consumers on the stream are denied by name.
    A label set's priority levels (``events.priority``) filter one more token."""
    stream = subjects.EVENTS_STREAM
    return (
        f"$JS.API.CONSUMER.CREATE.{stream}.*.{subjects.queued_for('*')}",
        f"$JS.API.CONSUMER.CREATE.{stream}.*.{subjects.queued_for('*')}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.ACK.{stream}.*.>",
    )


def _engine_consumers_denied() -> tuple[str, ...]:
    stream = subjects.EVENTS_STREAM
    denied: list[str] = []
    for partition in range(subjects.PARTITIONS):
        name = f"engine-p{partition}-evt"
        denied += [
            f"$JS.API.CONSUMER.CREATE.{stream}.{name}.>",
            f"$JS.API.CONSUMER.INFO.{stream}.{name}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
            f"$JS.ACK.{stream}.{name}.>",
        ]
    return tuple(denied)


def _ephemeral_readers(stream: str) -> tuple[str, ...]:
    """Ordered (ephemeral) consumers, as nats-py's watchers and KV ``watch`` create them."""
    return (
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        "$JS.FC.>",
    )


def _kv_writes(bucket: str) -> tuple[str, ...]:
    return (f"$KV.{bucket}.>",)


def _kv_reads(bucket: str) -> tuple[str, ...]:
    return (f"$JS.API.STREAM.INFO.KV_{bucket}", *_ephemeral_readers(f"KV_{bucket}"))


def _worker() -> Permissions:
    return Permissions(
        publish=(
            *_READS,
            *_dispatch_consumers(),
            *(f"evt.*.*.job.*.{event}" for event in _WORKER_EVENTS),
            "log.>",
            *_kv_writes(subjects.KV_WORKERS),
            *_kv_reads(subjects.KV_WORKERS),
            *_kv_reads(subjects.KV_LABELSETS),
            *_kv_reads(subjects.KV_CONTROL),
            *_kv_writes(subjects.KV_RATES),
            *_kv_reads(subjects.KV_RATES),
            *_kv_writes(subjects.KV_CONCURRENCY),
            *_kv_reads(subjects.KV_CONCURRENCY),
        ),
        subscribe=(f"{inbox_prefix('worker')}.>", "ctl.cancel.>"),
        deny_publish=(*_STREAM_ADMIN, *_engine_consumers_denied(), "cmd.>", "cmdsched.>"),
    )


def _client() -> Permissions:
    return Permissions(
        publish=(
            *_READS,
            "cmd.>",
            *_ephemeral_readers(subjects.EVENTS_STREAM),
            *_ephemeral_readers(subjects.LOGS_STREAM),
            *_ephemeral_readers(subjects.INDEX_STREAM),
            *_kv_reads(subjects.KV_WORKFLOWS),
            *_kv_reads(subjects.KV_WORKERS),
            *_kv_reads(subjects.KV_LABELSETS),
            *_kv_reads(subjects.KV_PROJECTOR),
            *_kv_reads(subjects.KV_PARTITIONS),
            *_kv_reads(subjects.KV_RATES),
            *_kv_reads(subjects.KV_CONCURRENCY),
            # Pausing a worker or a handler is an operator's switch in jw_control.
            *_kv_writes(subjects.KV_CONTROL),
            *_kv_reads(subjects.KV_CONTROL),
            # Registering definitions and adding, pausing, resuming, deleting schedules (their
            # ticks are armed by the engine's tickers, on a cmd.sched.arm.<name> command).
            *_kv_writes(subjects.KV_DEFINITIONS),
            *_kv_writes(subjects.KV_SCHEDULES),
            "ctl.cancel.>",
        ),
        subscribe=(f"{inbox_prefix('client')}.>", "evt.>", "log.>"),
        deny_publish=(*_STREAM_ADMIN, "evt.>", "cmdsched.>"),
    )


def _engine() -> Permissions:
    return Permissions(
        publish=(
            "$JS.API.>",
            "$JS.ACK.>",
            "$JS.FC.>",
            "evt.>",
            "cmd.>",
            "cmdsched.>",
            "dlq.>",
            "ctl.cancel.>",
            *_kv_writes(subjects.KV_PARTITIONS),
            *_kv_writes(subjects.KV_LABELSETS),
            *_kv_writes(subjects.KV_SCHEDULES),  # the ticker records each tick it handled
            *_kv_writes(subjects.KV_CONCURRENCY),  # workflow concurrency groups' queues
        ),
        subscribe=(f"{inbox_prefix('engine')}.>",),
        deny_publish=_STREAM_ADMIN,
        # The answer to an operator's command goes to the reply inbox its message names.
        answers=("client", "gateway", "admin"),
    )


def _projector() -> Permissions:
    return Permissions(
        publish=(
            "$JS.API.>",
            "$JS.ACK.>",
            "$JS.FC.>",
            "wfidx.>",
            "dlq.>",
            *_kv_writes(subjects.KV_WORKFLOWS),
            *_kv_writes(subjects.KV_PROJECTOR),
            *_kv_writes(subjects.KV_PARTITIONS),
        ),
        subscribe=(f"{inbox_prefix('projector')}.>",),
        deny_publish=(*_STREAM_ADMIN, "evt.>", "cmd.>", "cmdsched.>"),
    )


def _gateway() -> Permissions:
    """The HTTP gateway: a client for its API callers and a worker for its HTTP workers; it also
    signs leases (jw_gateway) and times an HTTP lease's expiry (a durable schedule)."""
    worker, client = _worker(), _client()
    return Permissions(
        publish=_union(
            worker.publish,
            client.publish,
            _kv_writes(subjects.KV_GATEWAY),
            _kv_reads(subjects.KV_GATEWAY),
            ("cmdsched.>",),
        ),
        subscribe=(f"{inbox_prefix('gateway')}.>", "ctl.cancel.>", "evt.>", "log.>"),
        deny_publish=(*_STREAM_ADMIN, "evt.*.*.wf.>", "evt.*.*.job.*.JobQueued.>"),
    )


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(subject for group in groups for subject in group))


def permissions() -> dict[str, Permissions | None]:
    """Each role's permissions; ``None`` = everything (the admin)."""
    return {
        "admin": None,
        "engine": _engine(),
        "projector": _projector(),
        "worker": _worker(),
        "client": _client(),
        "gateway": _gateway(),
    }


def render_authorization(passwords: Mapping[str, str]) -> str:
    """nats-server's ``authorization { users: [...] }`` block for the roles in ``passwords``.

    nats-server's configuration format reads JSON, so each user is rendered with ``json.dumps``
    (a password can hold any character without breaking the file).
    """
    users = []
    for role, perms in permissions().items():
        if role not in passwords:
            continue
        user: dict[str, object] = {"user": role, "password": passwords[role]}
        if perms is not None:
            user["permissions"] = _render_permissions(perms)
        users.append(user)
    return "authorization " + json.dumps({"users": users}, indent=2) + "\n"


def _render_permissions(perms: Permissions) -> dict[str, object]:
    rendered: dict[str, object] = {
        "publish": {
            "allow": [*perms.publish, *(f"{inbox_prefix(role)}.>" for role in perms.answers)],
            "deny": list(perms.deny_publish),
        },
        "subscribe": {"allow": list(perms.subscribe), "deny": list(perms.deny_subscribe)},
    }
    return rendered


def shipped_file() -> str:
    """``nats/roles.conf``: the roles with placeholder passwords, for servers run by you."""
    header = (
        "# jetwork's least-privilege roles (events/roles.py; docs/reliability.md, Threat model).\n"
        "# Generated: python -m events.roles > nats/roles.conf (a test keeps it in step).\n"
        "# Include it in your server's configuration and replace every password (or move the\n"
        "# permissions to nkey or JWT users). Each process connects as its role with\n"
        "# JETWORK_NATS_USER/_PASSWORD and its own inbox prefix JETWORK_NATS_INBOX=_INBOX_<role>.\n"
    )
    return header + render_authorization({role: f"change-me-{role}" for role in ROLES})


if __name__ == "__main__":
    print(shipped_file(), end="")
