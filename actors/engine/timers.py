"""Durable timers on JetStream message schedules (stream JW_TIMERS).

Arming a timer stores a schedule on ``timer.set.<id>``; when due, the server publishes its payload
on ``timer.fire.<id>``, which an engine consumes. Both live in the stream, so a timer survives the
restart of every process. A timer that fires late or twice is harmless: the command it carries is
checked against the actor's state (``TimeoutJob`` names its epoch, ``RequeueJob`` its attempt).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from events import subjects
from events.schedules import schedule_time

# Ids are subject tokens (``subjects.is_valid_token``): a fired timer naming anything else is
# garbage to dead-letter, not a timer of some workflow that does not exist.
_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"


class _Timer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow_id: str = Field(pattern=_TOKEN)
    due: datetime


class WorkflowTimeoutTimer(_Timer):
    kind: Literal["workflow_timeout"] = "workflow_timeout"

    def timer_id(self) -> str:
        return f"{self.workflow_id}.wf-timeout"


class JobTimeoutTimer(_Timer):
    kind: Literal["job_timeout"] = "job_timeout"
    job: str = Field(pattern=_TOKEN)
    epoch: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.timeout-e{self.epoch}"


class DispatchTimeoutTimer(_Timer):
    """Fails attempt ``attempt`` of ``job`` if no worker has claimed it by ``due``."""

    kind: Literal["dispatch_timeout"] = "dispatch_timeout"
    job: str = Field(pattern=_TOKEN)
    attempt: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.dispatch-a{self.attempt}"


class RetryTimer(_Timer):
    kind: Literal["retry"] = "retry"
    job: str = Field(pattern=_TOKEN)
    attempt: int

    def timer_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.retry-a{self.attempt}"


Timer = WorkflowTimeoutTimer | JobTimeoutTimer | DispatchTimeoutTimer | RetryTimer
AnyTimer = Annotated[Timer, Field(discriminator="kind")]
TIMERS: TypeAdapter[Timer] = TypeAdapter(AnyTimer)


class Timers:
    def __init__(self, nc: NATS) -> None:
        self._js = nc.jetstream()

    async def arm(self, timer: Timer) -> None:
        timer_id = timer.timer_id()
        await self._js.publish(
            subjects.timer_set(timer_id),
            timer.model_dump_json().encode(),
            headers={
                "Nats-Schedule": f"@at {schedule_time(timer.due)}",
                "Nats-Schedule-Target": subjects.timer_fire(timer_id),
                # Re-arming the same timer (a reaction retried) is de-duplicated.
                "Nats-Msg-Id": f"timer.{timer_id}",
            },
        )
