"""``RunHandle``: what ``Client.start`` returns for the workflow it started."""

from __future__ import annotations

from typing import TYPE_CHECKING

from events.errors import JetworkError
from projections.views import WorkflowView

if TYPE_CHECKING:
    from sdk.client.core import Client


class RunHandle:
    """A started workflow: its id, and shortcuts to wait for it, look at it or cancel it."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self._client = client
        self.workflow_id = workflow_id

    async def wait(self, timeout: float | None = None) -> WorkflowView:
        """The final view once the workflow has ended; ``WaitTimeout`` after ``timeout`` s."""
        return await self._client.wait(self.workflow_id, timeout=timeout)

    async def result(self, timeout: float | None = None) -> dict[str, str]:
        """The workflow's ``outputs`` once it has succeeded (its definition's top-level
        ``outputs``, rendered); ``JetworkError`` saying how it ended if it did not succeed,
        ``WaitTimeout`` after ``timeout`` s."""
        view = await self.wait(timeout=timeout)
        if view.status != "succeeded":
            why = f": {view.reason}" if view.reason else ""
            raise JetworkError(f"workflow {self.workflow_id!r} {view.status}{why}; no result")
        return dict(view.outputs)

    async def status(self) -> WorkflowView:
        """The workflow's current view (``WorkflowNotStarted`` until an engine has started it)."""
        return await self._client.status(self.workflow_id)

    async def cancel(self, *, reason: str = "cancelled by user", force: bool = False) -> None:
        """Ask the engine to cancel the workflow (see ``Client.cancel``)."""
        await self._client.cancel(self.workflow_id, reason=reason, force=force)

    def __repr__(self) -> str:
        return f"RunHandle({self.workflow_id!r})"
