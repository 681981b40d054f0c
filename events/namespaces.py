"""Namespaces (FlowFabric's): one jetwork deployment shared by teams that must not see each other.

A workflow belongs to the namespace it was started in (``WorkflowStarted.namespace``, copied onto
every ``JobSpec``); listings, status and every command by id see only their own namespace's
workflows; a worker serves one namespace; limits and concurrency groups are keyed per namespace.

The namespace ``default`` is recorded as nothing at all (``None`` on the events): its events,
label sets, limit keys and listings are exactly what they were before namespaces existed, so
nothing changes for existing users and their hot path pays nothing. Another namespace ``N`` is
a member ``ns:N`` of every job's requirement set (``events.labels``): the existing label routing
keeps its jobs on their own consumers, and only workers of ``N`` serve those. Pure: no I/O here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Final

from events.errors import JetworkError

DEFAULT: Final = "default"
ENV: Final = "JETWORK_NAMESPACE"
MEMBER_PREFIX: Final = "ns:"
"""A namespace's member of a requirement set (``ns:team-a``): labels and handler names are
``[A-Za-z0-9_-]``, so ``:`` never occurs in them and the member cannot be forged by a label."""
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class InvalidNamespace(JetworkError):
    """A namespace name that is not ``[A-Za-z0-9_-]{1,64}``."""


def require(name: str, *, where: str = "namespace") -> str:
    """``name`` if it is a valid namespace, else ``InvalidNamespace`` naming where it came from."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidNamespace(
            f"{where} {name!r} is not a valid namespace (1-64 letters, digits, '_' or '-')"
        )
    return name


def stored(name: str | None) -> str | None:
    """What events record for namespace ``name``: None for the default one."""
    if name is None or name == DEFAULT:
        return None
    return require(name)


def shown(recorded: str | None) -> str:
    """The namespace a recorded value (None: the default) names."""
    return recorded or DEFAULT


def member(recorded: str | None) -> str | None:
    """The requirement-set member of a namespace (None for the default one: no member)."""
    return None if recorded is None or recorded == DEFAULT else MEMBER_PREFIX + recorded


def of_members(members: Iterable[str]) -> str | None:
    """The namespace a requirement or capability set names (None: the default)."""
    for item in members:
        if item.startswith(MEMBER_PREFIX):
            return item[len(MEMBER_PREFIX) :]
    return None


def key_prefix(recorded: str | None) -> str:
    """The prefix of a namespace's keys in shared KV buckets (limits, rates, concurrency
    groups): ``""`` for the default namespace, so its keys are what they always were."""
    return "" if recorded is None or recorded == DEFAULT else f"ns.{recorded}."


class _Process:
    namespace: str | None = None


def set_process_namespace(name: str | None) -> None:
    """The namespace of this process's clients and workers (the command line's ``--namespace``)."""
    _Process.namespace = None if name is None else require(name, where="--namespace")


def current_namespace() -> str | None:
    """The ``--namespace`` given to this process, if any (no variable)."""
    return _Process.namespace


def process_namespace(environ: Mapping[str, str] = os.environ) -> str:
    """``--namespace``, else ``JETWORK_NAMESPACE``, else ``default``."""
    if _Process.namespace is not None:
        return _Process.namespace
    value = environ.get(ENV)
    return require(value, where=ENV) if value else DEFAULT
