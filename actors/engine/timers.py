"""Durable timers on JetStream message schedules, kept in the commands stream.

Arming a timer stores a schedule on ``cmdsched.<p>.<id>``; when due, the server publishes its
payload on ``cmd.<p>.timer.<id>``, a command of the workflow's partition like any other, consumed
by the engine that owns the partition. Both live in the stream, so a timer survives the restart
of every process. nats-server fires due schedules from a timer that runs at most every 250 ms
(``events.schedules``), so the owning engine also keeps a timer in process for what is due soon
(``Timers.arm``): it fires on time, the durable one a little later finds nothing left to do. A
timer that fires late or twice is harmless: the command it carries is checked against the actor's
state (``RequeueJob`` names its attempt, ``ExpireLease`` its epoch …).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Final, Literal

from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from events import subjects
from events.schedules import schedule_time

# Ids are subject tokens (``subjects.is_valid_token``): a fired timer naming anything else is
# garbage to dead-letter, not a timer of some workflow that does not exist.
_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"
# Timers due within this long also run in process, to the millisecond.
IN_PROCESS_HORIZON: Final = 120.0


class _Timer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str = Field(pattern=_TOKEN)
    due: datetime

    def timer_id(self) -> str:
        raise NotImplementedError


class WorkflowTimeoutTimer(_Timer):
    """``run``: the operator retries before it (0: the first run), each with a timer of its own
    (a timer id is de-duplicated: a retry's would otherwise be dropped as the first's again)."""

    kind: Literal["workflow_timeout"] = "workflow_timeout"
    run: int = 0

    def timer_id(self) -> str:
        suffix = f"-r{self.run}" if self.run else ""
        return f"{self.workflow_id}.wf-timeout{suffix}"


class JobTimeoutTimer(_Timer):
    """A backstop for a job with a timeout: armed when its attempt is queued, and armed again
    until the attempt has run past its timeout (the engine does not follow claims as they
    happen: the timer reads the job when it fires)."""

    kind: Literal["job_timeout"] = "job_timeout"
    job: str = Field(pattern=_TOKEN)
    attempt: int

    def timer_id(self) -> str:
        due = int(self.due.timestamp() * 1000)
        return f"{self.workflow_id}.{self.job}.timeout-a{self.attempt}-t{due}"


class RetryTimer(_Timer):
    kind: Literal["retry"] = "retry"
    job: str = Field(pattern=_TOKEN)
    attempt: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.retry-a{self.attempt}"


class DispatchTimeoutTimer(_Timer):
    """Fails attempt ``attempt`` of ``job`` if no worker has claimed it by ``due``."""

    kind: Literal["dispatch_timeout"] = "dispatch_timeout"
    job: str = Field(pattern=_TOKEN)
    attempt: int
    poll_count: int = 0  # a parked attempt queued again has a timer of its own

    def timer_id(self) -> str:
        parked = f"-p{self.poll_count}" if self.poll_count else ""
        return f"{self.workflow_id}.{self.job}.dispatch-a{self.attempt}{parked}"


class LeaseTimer(_Timer):
    """The end of a lease kept by the log (an HTTP worker's, ``gateway.leases``): pushed back by
    every heartbeat (a schedule replaces the one before on its subject), dropped by a result.
    When it fires, the engine queues the attempt again if that lease still holds it."""

    kind: Literal["lease"] = "lease"
    job: str = Field(pattern=_TOKEN)
    epoch: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.lease-e{self.epoch}"


class WaitTimeoutTimer(_Timer):
    """The end of a ``wait_for`` job's wait (``actors.signals``): fails attempt ``attempt`` of
    ``job`` if it still waits for its signal."""

    kind: Literal["wait_timeout"] = "wait_timeout"
    job: str = Field(pattern=_TOKEN)
    attempt: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.wait-a{self.attempt}"


class SleepTimer(_Timer):
    """The end of attempt ``attempt`` of a ``sleep``/``until`` job (``actors.inline_steps``)."""

    kind: Literal["sleep"] = "sleep"
    job: str = Field(pattern=_TOKEN)
    attempt: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.sleep-a{self.attempt}"


class CallbackTimer(_Timer):
    """Queues the parked attempt ``attempt`` of ``job`` again (a handler's ``InProgress``);
    ``poll_count`` names the parking it was armed for (``actors.parking``)."""

    kind: Literal["callback"] = "callback"
    job: str = Field(pattern=_TOKEN)
    attempt: int
    poll_count: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.callback-a{self.attempt}-p{self.poll_count}"


class GroupTimer(_Timer):
    """Run ``run`` of a workflow waiting for its concurrency group looks at the group again
    (``actors.groups``); ``check`` numbers the looks, so that each is armed once."""

    kind: Literal["group"] = "group"
    run: int
    check: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.group-r{self.run}-c{self.check}"


AnyTimer = (
    WorkflowTimeoutTimer
    | JobTimeoutTimer
    | DispatchTimeoutTimer
    | RetryTimer
    | LeaseTimer
    | WaitTimeoutTimer
    | SleepTimer
    | CallbackTimer
    | GroupTimer
)
TIMERS: TypeAdapter[AnyTimer] = TypeAdapter(Annotated[AnyTimer, Field(discriminator="kind")])


def schedule(timer: AnyTimer, *, msg_id: bool = True) -> tuple[str, bytes, dict[str, str]]:
    """Subject, body and headers of ``timer``'s durable schedule.

    ``msg_id``: de-duplicate a repeated arming of the same timer (a reaction retried). A timer
    pushed back on purpose (a lease's heartbeat) goes without: it replaces the schedule before.
    """
    timer_id = timer.timer_id()
    partition = subjects.partition_of(timer.workflow_id)
    headers = {
        "Nats-Schedule": f"@at {schedule_time(timer.due)}",
        "Nats-Schedule-Target": subjects.timer_fire(partition, timer_id),
    }
    if msg_id:
        headers["Nats-Msg-Id"] = f"timer.{timer_id}"
    return subjects.timer_set(partition, timer_id), timer.model_dump_json().encode(), headers


class Timers:
    """Arms durable timers and, for those due soon, in-process ones calling ``on_fire``."""

    def __init__(
        self,
        nc: NATS,
        *,
        on_fire: Callable[[AnyTimer], None],
        horizon: float = IN_PROCESS_HORIZON,
    ) -> None:
        self._js = nc.jetstream()
        self._on_fire = on_fire
        self._horizon = horizon
        self._handles: dict[str, asyncio.TimerHandle] = {}

    async def arm(self, timer: AnyTimer, *, now: datetime) -> None:
        timer_id = timer.timer_id()
        subject, body, headers = schedule(timer)
        await self._js.publish(subject, body, headers=headers)
        delay = (timer.due - now).total_seconds()
        if delay <= self._horizon and timer_id not in self._handles:
            loop = asyncio.get_running_loop()
            self._handles[timer_id] = loop.call_at(
                loop.time() + max(0.0, delay), self._fire, timer_id, timer
            )

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Cancel the in-process timers of workflows ``keep`` rejects (a partition given up)."""
        for timer_id, handle in list(self._handles.items()):
            if not keep(timer_id.split(".", 1)[0]):
                handle.cancel()
                del self._handles[timer_id]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _fire(self, timer_id: str, timer: AnyTimer) -> None:
        self._handles.pop(timer_id, None)
        self._on_fire(timer)
