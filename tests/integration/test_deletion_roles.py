"""Deletion under least-privilege roles (events/roles.py): the admin deletes, the projector
removes the views with what its role may do (fixtures: ``test_roles.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

from events.store import EventStore
from projections.reader import Views
from projections.store import ViewStore, Written
from projections.views import WorkflowView
from sdk.deletion import delete_workflow
from tests.integration.test_event_store_contract import _ended_workflow
from tests.integration.test_roles import ConnectAs, connect_as, secrets  # noqa: F401  (fixtures)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def test_the_admin_deletes_and_the_projector_removes_the_view(
    connect_as: ConnectAs,  # noqa: F811
) -> None:
    admin, projector = await connect_as("admin"), await connect_as("projector")
    store = EventStore(admin.nc)
    await _ended_workflow(store, "wf-roles-gone")
    views = ViewStore(projector.nc, generation=1)
    view = WorkflowView(
        workflow_id="wf-roles-gone", name="n", status="succeeded", started_at=NOW, ended_at=NOW
    )
    written = await views.write(view, 3, Written())
    deleted = await delete_workflow(admin.nc, store, "wf-roles-gone", by="ops", clock=lambda: NOW)
    assert [r.seq for r in await store.history("wf-roles-gone")] == [deleted.tombstone_seq]
    assert await views.remove("wf-roles-gone", written) == Written()
    reader = Views(admin.nc)
    assert await reader.get("wf-roles-gone") is None
    assert await reader.list() == []
    assert projector.refused == []
    await reader.close()
    await views.close()
    await store.close()
