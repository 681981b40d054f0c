"""The worker's default executor: Python handlers for ``uses``, the shell for ``run``."""

from __future__ import annotations

from events.catalog import JobSpec
from sdk.worker.executors.base import ExecutionResult, Executor, Failed
from sdk.worker.job_context import JobContext


class RoutingExecutor:
    """Sends a job naming a handler (``uses``) to ``python`` and a ``run`` command to ``shell``."""

    def __init__(self, *, shell: Executor | None, python: Executor | None) -> None:
        self.shell = shell
        self.python = python

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult:
        if spec.uses:
            if self.python is None:
                return Failed(
                    f"job uses handler {spec.uses!r} but this worker runs no Python handlers",
                    retryable=False,
                )
            return await self.python.execute(spec, ctx)
        if spec.run:
            if self.shell is None:
                return Failed("this worker does not run shell commands", retryable=False)
            return await self.shell.execute(spec, ctx)
        return Failed("the job has neither `run` nor `uses`", retryable=False)
