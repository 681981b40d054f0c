"""Workflow definitions registered by name and version, in KV ``jw_definitions``.

One key per version, ``<name>.<version>``, holding the validated definition (its ``version``
set). Registering content equal to the latest version (or to the explicit ``version:`` it
names) changes nothing; new content gets the file's ``version:`` or the latest + 1, by
create-if-absent so that two registrations racing never share a number. A stored version is
never changed: content that differs under an existing version is refused.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict

from events import subjects
from events.definition import WorkflowDefinition
from events.definition_refs import parse_reference as parse_reference  # (re-exported)
from events.errors import JetworkError

_CREATE_ATTEMPTS: Final = 20


class DefinitionNotFound(JetworkError):
    """No definition is registered under this name (or this version of it)."""


class DefinitionConflict(JetworkError):
    """Another content is registered under this name and version already."""


def digest(definition: WorkflowDefinition) -> str:
    """What a definition's content is, its version aside (equal content, equal digest)."""
    data = definition.model_dump(mode="json", exclude={"version"})
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


class StoredDefinition(BaseModel):
    """A registered definition: ``name@version``, its content's digest, when it was stored,
    and the definition itself (its ``version`` set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: int
    digest: str
    registered_at: datetime
    definition: WorkflowDefinition

    def reference(self) -> str:
        return f"{self.name}@{self.version}"


class DefinitionStore:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._js.key_value(subjects.KV_DEFINITIONS)
        return self._kv

    async def register(
        self, definition: WorkflowDefinition, *, now: datetime
    ) -> tuple[StoredDefinition, bool]:
        """Store ``definition``; return it as stored and whether it is new (False: the same
        content was registered already). Raises ``DefinitionConflict`` for other content under
        an existing explicit version."""
        kv = await self._bucket()
        content = digest(definition)
        name = definition.name
        for _ in range(_CREATE_ATTEMPTS):
            versions = await self.versions(name)
            wanted = definition.version
            if wanted is None and versions:
                latest = await self.get(name, versions[-1])
                if latest.digest == content:
                    return latest, False
            version = wanted if wanted is not None else (versions[-1] + 1 if versions else 1)
            if version in versions:
                existing = await self.get(name, version)
                if existing.digest == content:
                    return existing, False
                raise DefinitionConflict(
                    f"{name}@{version} is registered already with other content: a registered "
                    "version never changes; give the file another version: (or none, for the "
                    "next number)"
                )
            stored = StoredDefinition(
                name=name,
                version=version,
                digest=content,
                registered_at=now,
                definition=definition.model_copy(update={"version": version}),
            )
            try:
                await kv.create(_key(name, version), stored.model_dump_json().encode())
            except KeyWrongLastSequenceError:
                continue  # registered concurrently: look again
            return stored, True
        raise JetworkError(f"could not register {name}: too many concurrent registrations")

    async def versions(self, name: str) -> list[int]:
        """The registered versions of ``name``, oldest first."""
        return sorted(
            int(key.rsplit(".", 1)[1]) for key in await self._keys(f"{name}.*") if "." in key
        )

    async def get(self, name: str, version: int | None = None) -> StoredDefinition:
        """``name@version``, or the latest version of ``name``."""
        if version is None:
            versions = await self.versions(name)
            if not versions:
                raise DefinitionNotFound(f"no definition named {name!r} is registered")
            version = versions[-1]
        kv = await self._bucket()
        try:
            entry = await kv.get(_key(name, version))
        except NotFoundError:
            known = await self.versions(name)
            what = f"versions {', '.join(map(str, known))}" if known else "none"
            raise DefinitionNotFound(
                f"{name}@{version} is not registered (registered: {what})"
            ) from None
        return StoredDefinition.model_validate_json(entry.value or b"")

    async def latest(self) -> list[tuple[StoredDefinition, int]]:
        """Each registered name's latest version, with how many versions it has; by name."""
        by_name: dict[str, list[int]] = {}
        for key in await self._keys(">"):
            name, _, version = key.rpartition(".")
            by_name.setdefault(name, []).append(int(version))
        return [
            (await self.get(name, max(versions)), len(versions))
            for name, versions in sorted(by_name.items())
        ]

    async def _keys(self, filter_subject: str) -> list[str]:
        return await bucket_keys(self._js, subjects.KV_DEFINITIONS, filter_subject)


async def bucket_keys(js: JetStreamContext, bucket: str, filter_subject: str = ">") -> list[str]:
    """The keys of ``bucket`` matching ``filter_subject`` (deleted ones included), from the
    stream's subject counts: one request, no consumer (nats-py's ``keys`` creates a watcher)."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=prefix + filter_subject)
    return sorted(subject[len(prefix) :] for subject in info.state.subjects or {})


def _key(name: str, version: int) -> str:
    return f"{subjects.require_token(name, what='workflow name')}.{version}"
