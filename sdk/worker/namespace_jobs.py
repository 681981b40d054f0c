"""A namespace's ``max_running_jobs`` (``events/quotas.py``), as workers enforce it: an implicit
concurrency group of the namespace, ``jobs.<namespace>`` in KV ``jw_concurrency`` (a dot, so it
can never be a group a definition names), whose slot a worker takes before a claim beside the
job's own group, and gives back with the result (``sdk/worker/concurrency.py``). A full quota
releases the dispatch and it is tried again shortly, as a full group's.

The quotas are read from ``jw_control`` (``quota.<namespace>``) at most every ``ttl`` seconds per
namespace: on the hot path a claim costs a dictionary lookup; a quota set applies within that.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from events import namespaces, subjects
from events.catalog import JobSpec
from events.quotas import QuotaRecord, jobs_group, quota_key

_log = structlog.get_logger("jetwork.worker")


class NamespaceJobQuotas:
    """Which namespaces bound their running jobs, and to how many."""

    def __init__(self, *, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._clock = ttl, clock
        self._control: KeyValue | None = None
        self._known: dict[str | None, tuple[float, int | None]] = {}

    async def start(self, js: JetStreamContext) -> None:
        self._control = await js.key_value(subjects.KV_CONTROL)

    async def slot(self, spec: JobSpec) -> tuple[str, int] | None:
        """The key and size of the job's namespace's running-jobs group; None: no quota."""
        now = self._clock()
        known = self._known.get(spec.namespace)
        if known is None or now - known[0] >= self._ttl:
            known = (now, await self._read(namespaces.shown(spec.namespace)))
            self._known[spec.namespace] = known
        limit = known[1]
        return None if limit is None else (jobs_group(namespaces.shown(spec.namespace)), limit)

    async def _read(self, namespace: str) -> int | None:
        if self._control is None:
            return None  # not started (a bare ConcurrencyGroups in tests)
        try:
            entry = await self._control.get(quota_key(namespace))
        except KeyNotFoundError:
            return None
        except Exception as exc:  # unreadable now: as before (the next read may do)
            _log.warning("cannot read the namespace's quota", namespace=namespace, error=repr(exc))
            return None
        if not entry.value:
            return None
        try:
            return QuotaRecord.model_validate_json(entry.value).max_running_jobs
        except ValidationError:
            return None
