"""The client's deletion of an ended workflow (``jetwork delete``; see ``sdk.deletion``)."""

from __future__ import annotations

from sdk.client.base import ClientBase
from sdk.client.control import default_operator
from sdk.client.translate import require_id, translated
from sdk.deletion import Deleted, delete_workflow

__all__ = ["ClientDeletion", "Deleted"]


class ClientDeletion(ClientBase):
    """``Client.delete``."""

    async def delete(
        self, workflow_id: str, *, reason: str | None = None, by: str | None = None
    ) -> Deleted:
        """Delete an ended workflow: its events (a ``WorkflowDeleted`` tombstone stays, the
        audit of who deleted it and when), its logs, and, once the projector has seen the
        tombstone, its view and listing entry. ``status`` then raises ``WorkflowNotFound``.

        Raises ``WorkflowNotFound`` for an unknown workflow and ``CommandRefused`` for one that
        has not ended (nothing of it is touched). Deleting a deleted workflow again finishes
        whatever an interrupted deletion left.
        """
        require_id(workflow_id)
        await self._require_namespace(workflow_id)  # another namespace's: not found
        with translated(f"deleting workflow {workflow_id}", url=self._url):
            return await delete_workflow(
                self._nc, self._store, workflow_id, by=by or default_operator(), reason=reason
            )
