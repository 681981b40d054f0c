"""Label routing (design A): requirement sets, capabilities and their canonical subject tokens.

A job's **requirement set** is its labels plus ``@<handler>`` when it ``uses:`` a Python handler.
Its canonical **token** (sorted members joined by ``+``, ``~`` when empty) is the last token of
its ``JobQueued`` subject, so one durable consumer per label set receives exactly its jobs. A
worker serves every label set whose requirements its capabilities (labels plus ``@<handler>``
per registered handler) include. Pure functions: no I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from events import namespaces, subjects

EMPTY_TOKEN: Final = "~"
"""The token of the empty requirement set: a job that runs on any worker."""
HANDLER_PREFIX: Final = "@"
SEPARATOR: Final = "+"
CONSUMER_PREFIX: Final = "ls-"
_HASH_HEX_DIGITS: Final = 16  # 64 bits: collisions are negligible for any real number of sets


def requirement_set(
    labels: Iterable[str], uses: str | None = None, namespace: str | None = None
) -> frozenset[str]:
    """What a worker must offer to run a job: its labels, plus ``@<uses>`` for a handler job,
    plus ``ns:<namespace>`` outside the default namespace (``events.namespaces``)."""
    reqs = {subjects.require_token(label, what="label") for label in labels}
    if uses:
        reqs.add(HANDLER_PREFIX + subjects.require_token(uses, what="handler name"))
    ns = namespaces.member(namespace)
    if ns is not None:
        reqs.add(ns)
    return frozenset(reqs)


def capabilities(
    labels: Iterable[str], handlers: Iterable[str] = (), namespace: str | None = None
) -> frozenset[str]:
    """What a worker offers: its labels plus ``@<name>`` for every registered handler, plus
    ``ns:<namespace>`` for a worker outside the default namespace."""
    caps = frozenset(labels) | {HANDLER_PREFIX + name for name in handlers}
    ns = namespaces.member(namespace)
    return caps if ns is None else caps | {ns}


def serves(caps: frozenset[str], reqs: frozenset[str]) -> bool:
    """True when a worker with capabilities ``caps`` may run jobs requiring ``reqs``: it offers
    every requirement and both are of one namespace (a worker of ``team-a`` offers more than a
    default job requires, yet must not take it)."""
    return reqs <= caps and namespaces.of_members(caps) == namespaces.of_members(reqs)


def labelset_token(reqs: Iterable[str]) -> str:
    """The canonical subject token of a requirement set (``~`` for the empty set).

    Labels and handler names are ``[A-Za-z0-9_-]`` only, so neither ``+`` nor ``@`` can occur
    inside a member: the token is unambiguous and parses back with ``parse_token``.
    """
    members = sorted(reqs)
    return SEPARATOR.join(members) if members else EMPTY_TOKEN


def token_of(labels: Iterable[str], uses: str | None = None, namespace: str | None = None) -> str:
    """The label set token of a job with these labels and handler, in this namespace."""
    return labelset_token(requirement_set(labels, uses, namespace))


def parse_token(token: str) -> frozenset[str]:
    """The requirement set a token names (inverse of ``labelset_token``)."""
    if token == EMPTY_TOKEN:
        return frozenset()
    return frozenset(token.split(SEPARATOR))


def consumer_name(token: str) -> str:
    """The durable consumer of a label set: ``ls-`` + a short stable hash of its token.

    Tokens may hold ``@``, ``+`` and ``~`` and be long; consumer names and KV keys may not.
    """
    digest = hashlib.sha256(token.encode()).hexdigest()[:_HASH_HEX_DIGITS]
    return f"{CONSUMER_PREFIX}{digest}"
