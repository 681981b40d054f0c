"""The client's control of a run: pause, resume, skip a job, retry, rerun, restart (an operator's
commands).

Each is checked here against the workflow's log with the workflow actor's own decision (a clear
refusal at once, even while no engine runs), then sent to the engine owning the workflow on
``cmd.<p>.<pause|resume|skip|retry|rerun|restart>.<wf>`` with a ``reply_to`` inbox. The engine
decides again on the state its appends are conditional on (it has the last word) and answers; a
request whose answer does not come within ``answer_timeout`` stays stored and is applied when an
engine is back (a restart's new run is started by that engine, once it applied the restart).
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
from pydantic import ValidationError

from actors import workflow
from actors.control import control_command
from events.errors import CommandRefused
from events.requests import (
    ControlAnswer,
    ControlRequest,
    PauseRequest,
    RerunRequest,
    RestartRequest,
    ResumeRequest,
    RetryRequest,
    SetVarsRequest,
    SkipRequest,
    new_workflow_id,
    request_msg_id,
)
from sdk.client.base import ClientBase
from sdk.client.translate import require_id, translated
from sdk.errors import InvalidArgument, JobNotFound, WorkflowNotStarted

DEFAULT_ANSWER_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ControlResult:
    """What became of an operator's command.

    ``applied``: the engine recorded it (``changed`` False when it held already, e.g. pausing a
    paused workflow); ``applied`` False: no engine answered within the time given, the request is
    stored and is applied when one is back (``jetwork status`` shows it then). ``restarted_as``:
    a restart's new run (it starts once the engine applied the restart).
    """

    workflow_id: str
    command: str
    applied: bool
    changed: bool
    restarted_as: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "workflow_id": self.workflow_id,
            "command": self.command,
            "applied": self.applied,
            "changed": self.changed,
        }
        if self.restarted_as is not None:
            out["restarted_as"] = self.restarted_as
        return out


def default_operator() -> str:
    """``user@host``: who is recorded as doing it when nobody says."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no user name in this environment (a container without one)
        return "unknown"


class ClientControl(ClientBase):
    """``Client.pause``, ``resume``, ``skip``, ``retry``, ``rerun``, ``restart`` and
    ``set_vars``."""

    async def pause(
        self,
        workflow_id: str,
        *,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Pause a running workflow: no job is queued until ``resume`` (running jobs finish and
        their results are recorded; retries and the timeout that fall due wait).

        Raises ``WorkflowNotFound``, or ``CommandRefused`` for an ended workflow or one being
        cancelled. Pausing a paused workflow changes nothing.
        """
        return await self._control(
            PauseRequest, workflow_id, reason=reason, by=by, answer_timeout=answer_timeout
        )

    async def resume(
        self,
        workflow_id: str,
        *,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Resume a paused workflow where it stopped (retries that fell due are queued, a
        timeout that passed ends it). Raises ``CommandRefused`` when it is not paused."""
        return await self._control(
            ResumeRequest, workflow_id, reason=reason, by=by, answer_timeout=answer_timeout
        )

    async def skip(
        self,
        workflow_id: str,
        job: str,
        *,
        outputs: Mapping[str, str] | None = None,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Record a pending, queued, waiting or failed job as skipped by an operator: its
        dependents proceed as if it had succeeded with ``outputs``. ``job`` may be one instance
        ``<job>-<index>`` of a fan-out that runs: its slot in the gathered outputs gets
        ``outputs`` (null for a key not given) and the fanned-out job counts it as succeeded.

        Raises ``JobNotFound`` for a job the workflow does not have, ``CommandRefused`` for a
        job that is running or has ended otherwise, or a workflow that has ended.
        """
        require_id(job, what="job name")
        given = {str(key): str(value) for key, value in (outputs or {}).items()}
        return await self._control(
            SkipRequest,
            workflow_id,
            reason=reason,
            by=by,
            answer_timeout=answer_timeout,
            job=job,
            outputs=given,
        )

    async def retry(
        self,
        workflow_id: str,
        *,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Run a failed or cancelled workflow again: its failed and cancelled jobs, and the jobs
        skipped because of them, run as new attempts; succeeded jobs keep their outputs. The
        same workflow goes back to ``running``. Raises ``CommandRefused`` for a running, paused
        or succeeded workflow."""
        return await self._control(
            RetryRequest, workflow_id, reason=reason, by=by, answer_timeout=answer_timeout
        )

    async def rerun(
        self,
        workflow_id: str,
        *,
        from_job: str,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Run an ended workflow again from ``from_job``: that job and every job downstream of
        it (through ``needs`` and ``needs_any``, transitively) run as new attempts and read the
        new outputs; the other jobs keep theirs. The same workflow goes back to ``running``.

        Raises ``JobNotFound`` for a job the workflow does not have and ``CommandRefused`` for a
        workflow that is running or paused (or a job of it still stopping).
        """
        require_id(from_job, what="job name")
        return await self._control(
            RerunRequest,
            workflow_id,
            reason=reason,
            by=by,
            answer_timeout=answer_timeout,
            job=from_job,
        )

    async def restart(
        self,
        workflow_id: str,
        *,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Run an ended workflow again as a new run (a new workflow id, in ``.restarted_as``)
        with the same definition and inputs. The old run records ``restarted_as``, the new one
        ``restarted_from`` (both in ``status``). Raises ``CommandRefused`` for a workflow that is
        running or paused."""
        return await self._control(
            RestartRequest,
            workflow_id,
            reason=reason,
            by=by,
            answer_timeout=answer_timeout,
            restarted_as=new_workflow_id(),
        )

    async def set_vars(
        self,
        workflow_id: str,
        values: Mapping[str, Any],
        *,
        reason: str | None = None,
        by: str | None = None,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> ControlResult:
        """Set workflow variables: every job not yet queued reads ``${{ vars.KEY }}`` with these
        values (jobs queued already keep theirs); keys the definition did not declare are added.

        Raises ``InvalidArgument`` for a name an expression cannot read (letters, digits, ``_``)
        and ``CommandRefused`` for a workflow that has ended. Values that hold already change
        nothing (``changed`` False).
        """
        if not values:
            raise InvalidArgument("no variable to set: give at least one KEY=VALUE")
        return await self._control(
            SetVarsRequest,
            workflow_id,
            reason=reason,
            by=by,
            answer_timeout=answer_timeout,
            values=dict(values),
        )

    async def _control(
        self,
        kind: type[ControlRequest],
        workflow_id: str,
        *,
        reason: str | None,
        by: str | None,
        answer_timeout: float,
        **fields: Any,
    ) -> ControlResult:
        require_id(workflow_id)
        inbox = self._nc.new_inbox()
        try:
            request = kind(
                workflow_id=workflow_id,
                by=by or default_operator(),
                reason=reason,
                request_id=uuid.uuid4().hex,
                reply_to=inbox,
                **fields,
            )
        except ValidationError as exc:
            raise InvalidArgument(f"cannot send this {kind.__name__}: {exc}") from None
        try:
            state = await self._state(workflow_id)
        except WorkflowNotStarted:
            state = None  # its start waits in the same queue, before this: the engine judges
        restarted_as = fields.get("restarted_as")
        if state is not None:
            job = fields.get("job")
            # (A fan-out's instance ``<job>-<index>`` may be skipped: the actor says when.)
            instance = kind is SkipRequest and (job or "").rpartition("-")[0] in state.fanouts
            if job is not None and job not in state.order and not instance:
                raise JobNotFound(workflow_id, job, state.order)
            # The actor's own decision on the log as it is: a refusal raises here.
            if not workflow.decide(state, control_command(request, datetime.now(UTC))):
                return ControlResult(workflow_id, request.type, applied=True, changed=False)
        answer = await self._ask(request, inbox, answer_timeout)
        if answer is None:
            return ControlResult(
                workflow_id, request.type, applied=False, changed=False, restarted_as=restarted_as
            )
        if not answer.accepted:
            raise CommandRefused(
                workflow_id, request.type, answer.error or "", message=answer.error
            )
        return ControlResult(
            workflow_id,
            request.type,
            applied=True,
            changed=answer.changed,
            restarted_as=answer.restarted_as,
        )

    async def _ask(
        self, request: ControlRequest, inbox: str, timeout: float
    ) -> ControlAnswer | None:
        """Send ``request`` and wait for the engine's answer; None when none came in time."""
        what = f"{request.type} {request.workflow_id}"
        with translated(what, url=self._url):
            subscription = await self._nc.subscribe(inbox, max_msgs=1)
        try:
            payload = request.model_dump_json().encode()
            headers = {"Nats-Msg-Id": request_msg_id(request)}
            js = self._nc.jetstream()
            with translated(what, url=self._url):
                await js.publish(request.subject(), payload, headers=headers)
            if timeout <= 0:
                return None
            try:
                message = await subscription.next_msg(timeout=timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                return None
            return ControlAnswer.model_validate_json(message.data)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
