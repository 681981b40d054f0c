"""``Client.set_quota`` / ``quotas`` / ``delete_quota``: namespaces' quotas (``events/quotas.py``),
an operator's keys ``quota.<namespace>`` in KV ``jw_control``, with what each namespace runs now
(its workflows' holders in KV ``jw_quotas``, its jobs' in ``jw_concurrency``)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, NoKeysError
from pydantic import ValidationError

from events import namespaces, subjects
from events.quotas import (
    PREFIX,
    OverQuota,
    QuotaRecord,
    decode_holders,
    jobs_group,
    quota_key,
    workflows_key,
)
from projections.recent import recent_key
from sdk.client.control import default_operator
from sdk.client.reads import ClientReads
from sdk.client.translate import translated
from sdk.errors import InvalidArgument
from sdk.worker.group_line import decode as decode_job_line


@dataclass(frozen=True, slots=True)
class NamespaceQuota:
    """A namespace's quota and what it runs now (holders counted, so possibly a little high
    until an ended workflow's place is given back)."""

    namespace: str
    max_running_workflows: int | None
    max_running_jobs: int | None
    over_quota: str
    running_workflows: int
    running_jobs: int
    by: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "max_running_workflows": self.max_running_workflows,
            "max_running_jobs": self.max_running_jobs,
            "over_quota": self.over_quota,
            "running_workflows": self.running_workflows,
            "running_jobs": self.running_jobs,
            "by": self.by,
        }


@dataclass(frozen=True, slots=True)
class KnownNamespace:
    """A namespace ``Client.namespaces`` knows of, with its quota if it has one."""

    namespace: str
    workers: int  # its live workers (not stale)
    quota: NamespaceQuota | None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "workers": self.workers,
            "quota": None if self.quota is None else self.quota.to_json_dict(),
        }


class ClientNamespaces(ClientReads):
    async def namespaces(self) -> builtins.list[KnownNamespace]:
        """The namespaces known, by name: ``default``, the client's own, those with a quota, those
        of registered workers and those workflows were started in (their recent lists,
        ``projections.recent``: one key listing, whatever the number of workflows). A name
        nothing was ever done in is in none of these; it is still a namespace one may work in."""
        quotas = {quota.namespace: quota for quota in await self.quotas()}
        with translated("listing namespaces", url=self._url):
            reader = self._reader()
            workers = await reader.workers()
            generation = await reader.generation()
            keys = await _keys(
                await self._nc.jetstream().key_value(subjects.KV_WORKFLOWS),
                recent_key(generation, "x.*.all"),
            )
        names = {namespaces.DEFAULT, self._namespace, *quotas}
        names.update(w.namespace for w in workers)
        prefix = recent_key(generation, "x.")
        names.update(k.removeprefix(prefix).removesuffix(".all") for k in keys)
        live: dict[str, int] = {}
        for w in workers:
            if not w.stale:
                live[w.namespace] = live.get(w.namespace, 0) + 1
        return [
            KnownNamespace(namespace=name, workers=live.get(name, 0), quota=quotas.get(name))
            for name in sorted(names)
        ]

    async def set_quota(
        self,
        namespace: str,
        *,
        max_running_workflows: int | None = None,
        max_running_jobs: int | None = None,
        over_quota: str = "wait",
    ) -> NamespaceQuota:
        """Bound what ``namespace`` runs at once: workflows (a start over it waits in the
        commands stream, or with ``over_quota="refuse"`` is refused) and jobs (a claim over it
        waits). None: no bound of that kind. Applies within a second to every engine and
        worker."""
        namespaces.require(namespace)
        if max_running_workflows is None and max_running_jobs is None:
            raise InvalidArgument(
                "give --max-running-workflows and/or --max-running-jobs (or delete the quota)"
            )
        try:
            record = QuotaRecord(
                max_running_workflows=max_running_workflows,
                max_running_jobs=max_running_jobs,
                over_quota=OverQuota(over_quota),
                by=default_operator(),
            )
        except (ValidationError, ValueError) as exc:
            raise InvalidArgument(f"invalid quota for namespace {namespace!r}: {exc}") from None
        with translated(f"setting the quota of {namespace}", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            await kv.put(quota_key(namespace), record.encode())
        self._refusing = None
        return await self._quota_view(namespace, record)

    async def delete_quota(self, namespace: str) -> bool:
        """Lift a namespace's quota; False if it had none."""
        namespaces.require(namespace)
        with translated(f"deleting the quota of {namespace}", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            try:
                entry = await kv.get(quota_key(namespace))
            except KeyNotFoundError:
                return False
            if not entry.value:
                return False
            await kv.delete(quota_key(namespace))
        self._refusing = None
        return True

    async def quota(self, namespace: str | None = None) -> QuotaRecord | None:
        """The quota of ``namespace`` (default: the client's), None when it has none."""
        name = namespaces.require(namespace) if namespace else self._namespace
        with translated(f"reading the quota of {name}", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            try:
                entry = await kv.get(quota_key(name))
            except KeyNotFoundError:
                return None
        if not entry.value:
            return None
        try:
            return QuotaRecord.model_validate_json(entry.value)
        except ValidationError:
            return None

    async def quotas(self) -> builtins.list[NamespaceQuota]:
        """Every namespace with a quota, by name, with what it runs now."""
        with translated("reading quotas", url=self._url):
            kv = await self._nc.jetstream().key_value(subjects.KV_CONTROL)
            try:
                keys = sorted(k for k in await kv.keys() if k.startswith(PREFIX))
            except NoKeysError:
                keys = []
        found = []
        for key in keys:
            name = key.removeprefix(PREFIX)
            record = await self.quota(name)
            if record is not None:
                found.append(await self._quota_view(name, record))
        return found

    async def _quota_view(self, namespace: str, record: QuotaRecord) -> NamespaceQuota:
        with translated(f"reading what {namespace} runs", url=self._url):
            js = self._nc.jetstream()
            workflows = await _value(
                await js.key_value(subjects.KV_QUOTAS), workflows_key(namespace)
            )
            jobs = await _value(await js.key_value(subjects.KV_CONCURRENCY), jobs_group(namespace))
        return NamespaceQuota(
            namespace=namespace,
            max_running_workflows=record.max_running_workflows,
            max_running_jobs=record.max_running_jobs,
            over_quota=record.over_quota.value,
            running_workflows=len(decode_holders(workflows)),
            running_jobs=len(decode_job_line(jobs).holders),
            by=record.by,
        )


async def _value(kv: Any, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    value: bytes | None = entry.value
    return value


async def _keys(kv: Any, pattern: str) -> builtins.list[str]:
    """The keys matching ``pattern``, filtered by the server (``KeyValue.keys`` reads every key
    of the bucket and filters here: one per workflow)."""
    watcher = await kv.watch(pattern, ignore_deletes=True, meta_only=True)
    found = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of what is stored
                break
            found.append(entry.key)
    finally:
        await watcher.stop()
    return found
