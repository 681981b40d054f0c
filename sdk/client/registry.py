"""The client's registered definitions (by name and version) and schedules.

``register_definition`` stores a validated definition as ``name@version``; ``start("name")`` or
``start("name@2")`` runs a registered one (``commands.py``). ``add_schedule`` registers a file
with a ``schedule:`` for ``jetwork server``'s ticker, which starts a run per tick.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from actors.definitions.named import resolve_names
from actors.schedules import next_tick
from events.definition import WorkflowDefinition
from events.definition_store import DefinitionNotFound, DefinitionStore, StoredDefinition
from events.definition_store import parse_reference as _parse_reference
from events.schedule_store import ScheduleEntry, ScheduleNotFound, ScheduleStore
from events.subjects import require_token
from sdk.client.base import ClientBase
from sdk.client.definitions import WorkflowSource, checked_inputs, resolve_definition
from sdk.client.translate import translated
from sdk.errors import InvalidArgument

__all__ = ["ClientRegistry", "DefinitionNotFound", "ScheduleNotFound", "parse_reference"]


def parse_reference(text: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME@VERSION``; raises ``InvalidArgument`` for anything else."""
    parsed = _parse_reference(text)
    if parsed is None:
        raise InvalidArgument(
            f"{text!r} is not a definition's name: use NAME or NAME@VERSION (e.g. nightly@2)"
        )
    return parsed


def _name(text: str, *, what: str) -> str:
    try:
        return require_token(text, what=what)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


class ClientRegistry(ClientBase):
    """Definitions by name and version, and schedules."""

    async def register_definition(
        self, workflow_or_path: WorkflowSource
    ) -> tuple[StoredDefinition, bool]:
        """Validate and store a definition as ``name@version`` (its ``version:``, else the
        latest + 1). Returns it as stored and whether it is new: registering content equal to
        the latest version (or to its explicit version) stores nothing. Raises
        ``DefinitionConflict`` for other content under an existing explicit version."""
        definition = resolve_definition(workflow_or_path)
        with translated(f"registering {definition.name}", url=self._url):
            return await DefinitionStore(self._nc.jetstream()).register(
                definition, now=datetime.now(UTC)
            )

    async def definition(self, reference: str) -> StoredDefinition:
        """A registered definition: ``name`` (its latest version) or ``name@version``.
        Raises ``DefinitionNotFound``."""
        name, version = parse_reference(reference)
        with translated(f"reading definition {reference}", url=self._url):
            return await DefinitionStore(self._nc.jetstream()).get(name, version)

    async def definition_versions(self, name: str) -> builtins.list[StoredDefinition]:
        """Every registered version of ``name``, oldest first (empty: none)."""
        _name(name, what="workflow name")
        store = DefinitionStore(self._nc.jetstream())
        with translated(f"reading definition {name}", url=self._url):
            return [await store.get(name, v) for v in await store.versions(name)]

    async def definitions(self) -> builtins.list[tuple[StoredDefinition, int]]:
        """Each registered name's latest version and its number of versions, by name."""
        with translated("listing definitions", url=self._url):
            return await DefinitionStore(self._nc.jetstream()).latest()

    async def add_schedule(
        self,
        workflow_or_path: WorkflowSource,
        *,
        inputs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> tuple[ScheduleEntry, bool]:
        """Schedule a workflow whose definition has a ``schedule:``: ``jetwork server``'s
        ticker starts a run with ``inputs`` at each tick. ``name`` defaults to the workflow's.
        Adding it again with other content replaces it (from the next tick); with the same
        content it changes nothing (False)."""
        definition = resolve_definition(workflow_or_path)
        if not definition.schedule:
            raise InvalidArgument(
                f"{definition.name} has no schedule: add e.g. `schedule: [{{every: 1h}}]` to it"
            )
        given = dict(inputs or {})
        checked_inputs(definition, given)
        # Sub-workflows by name are looked up at each tick; one unknown now is refused now.
        await resolve_named_children(self, definition)
        key = _name(name or definition.name, what="schedule name")
        now = datetime.now(UTC)
        with translated(f"adding schedule {key}", url=self._url):
            return await ScheduleStore(self._nc.jetstream()).put_new(
                key, definition, given, now=now, first_tick=next_tick(definition.schedule, now)
            )

    async def schedules(self) -> builtins.list[ScheduleEntry]:
        """Every schedule, by name."""
        with translated("listing schedules", url=self._url):
            return await ScheduleStore(self._nc.jetstream()).all()

    async def schedule(self, name: str) -> ScheduleEntry:
        """One schedule; raises ``ScheduleNotFound``."""
        _name(name, what="schedule name")
        with translated(f"reading schedule {name}", url=self._url):
            return await ScheduleStore(self._nc.jetstream()).require(name)

    async def pause_schedule(self, name: str, *, by: str = "unknown") -> bool:
        """Start no run for its ticks until resumed; False when it was paused already."""
        _name(name, what="schedule name")
        store = ScheduleStore(self._nc.jetstream())
        changed = False

        def pause(entry: ScheduleEntry) -> ScheduleEntry | None:
            nonlocal changed
            changed = not entry.paused
            return entry.model_copy(update={"paused": True, "paused_by": by}) if changed else None

        with translated(f"pausing schedule {name}", url=self._url):
            if await store.change(name, pause) is None:
                raise ScheduleNotFound(f"no schedule named {name!r} (jetwork schedules lists them)")
        return changed

    async def resume_schedule(self, name: str) -> bool:
        """Tick again from the next tick (ticks while paused never run); False when it was
        not paused."""
        _name(name, what="schedule name")
        store = ScheduleStore(self._nc.jetstream())
        changed = False
        now = datetime.now(UTC)

        def resume(entry: ScheduleEntry) -> ScheduleEntry | None:
            nonlocal changed
            changed = entry.paused
            if not changed:
                return None
            upcoming = next_tick(entry.definition.schedule, now)
            return entry.model_copy(
                update={"paused": False, "paused_by": None, "next_tick": upcoming}
            )

        with translated(f"resuming schedule {name}", url=self._url):
            entry = await store.change(name, resume)
            if entry is None:
                raise ScheduleNotFound(f"no schedule named {name!r} (jetwork schedules lists them)")
            if changed:
                await store.request_arm(entry)
        return changed

    async def delete_schedule(self, name: str) -> None:
        """Remove a schedule (runs it started go on). Raises ``ScheduleNotFound``."""
        _name(name, what="schedule name")
        with translated(f"deleting schedule {name}", url=self._url):
            if not await ScheduleStore(self._nc.jetstream()).delete(name):
                raise ScheduleNotFound(f"no schedule named {name!r} (jetwork schedules lists them)")


async def resolve_source(client: ClientBase, source: WorkflowSource) -> WorkflowSource:
    """``source``, or the registered definition it names. A text that is the path of an
    existing file is that file (as before definitions had names); otherwise ``NAME`` or
    ``NAME@VERSION`` is looked up in the registry."""
    if not isinstance(source, str) or os.path.exists(source):  # noqa: ASYNC240 (one stat)
        return source
    parsed = _parse_reference(source)
    if parsed is None:
        return source  # a path that does not exist: reading it reports that
    with translated(f"reading definition {source}", url=client.url):
        try:
            stored = await DefinitionStore(client.nc.jetstream()).get(*parsed)
        except DefinitionNotFound as exc:
            raise DefinitionNotFound(f"{exc} (and there is no file {source!r})") from None
    return stored.definition


async def resolve_named_children(
    client: ClientBase, definition: WorkflowDefinition
) -> WorkflowDefinition:
    """``definition`` with the registered definitions its ``workflow:`` jobs name embedded and
    pinned to their version now (``actors.definitions.named``); raises ``InvalidWorkflow``."""
    store = DefinitionStore(client.nc.jetstream())

    async def fetch(name: str, version: int | None) -> WorkflowDefinition:
        return (await store.get(name, version)).definition

    with translated(f"resolving the sub-workflows of {definition.name}", url=client.url):
        return await resolve_names(definition, fetch)
