"""Every JetStream stream, subject and bucket name jetwork uses, in one place.

Subject layout (see docs/architecture.md):
- ``evt.<wf>.wf.<EventType>``            workflow actor events
- ``evt.<wf>.job.<job>.<EventType>``     job actor events
- ``cmd.<name>.<wf>``                    commands (start, cancel, ...)
- ``job.<labelset>``                     job dispatch, one subject per canonical label set
- ``jobsched.<id>``                      delayed dispatch (a message schedule onto job.<labelset>)
- ``log.<wf>.<job>``                     job log chunks
- ``timer.set.<id>`` / ``timer.fire.<id>`` durable timers (message schedules)
- ``ctl.cancel.<wf>.<job>``              core NATS cancel notice to a running job's worker
"""

from __future__ import annotations

import re
from typing import Final

EVENTS_STREAM: Final = "JW_EVENTS"
COMMANDS_STREAM: Final = "JW_COMMANDS"
JOBS_STREAM: Final = "JW_JOBS"
LOGS_STREAM: Final = "JW_LOGS"
TIMERS_STREAM: Final = "JW_TIMERS"
DEAD_LETTERS_STREAM: Final = "JW_DEAD_LETTERS"
INDEX_STREAM: Final = "JW_INDEX"

EVENTS_ALL: Final = "evt.>"
COMMANDS_ALL: Final = "cmd.>"
JOBS_ALL: Final = "job.>"
JOB_SCHEDULES_ALL: Final = "jobsched.>"
LOGS_ALL: Final = "log.>"
TIMERS_ALL: Final = "timer.>"
DEAD_LETTERS_ALL: Final = "dlq.>"
CANCEL_NOTICES_ALL: Final = "ctl.cancel.>"
INDEX_ALL: Final = "wfidx.>"

KV_WORKFLOWS: Final = "jw_workflows"
KV_WORKERS: Final = "jw_workers"
KV_LABELSETS: Final = "jw_labelsets"
KV_PROJECTOR: Final = "jw_projector"

# A token is what may stand between two dots. Ids and job names are restricted to this alphabet so
# that they can never inject wildcards (`*`, `>`) or extra tokens (`.`) into a subject.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")  # \Z: "$" also matches before a final newline


def is_valid_token(value: str) -> bool:
    """True when ``value`` can be used as one subject token (ids, job names, event types)."""
    return bool(_TOKEN.match(value))


def require_token(value: str, *, what: str) -> str:
    if not is_valid_token(value):
        raise ValueError(
            f"{what} {value!r} is not a valid name: use 1-128 letters, digits, '_' or '-'"
        )
    return value


def workflow_events(wf_id: str) -> str:
    """All events of one workflow, workflow and job actors alike, in log order."""
    return f"evt.{wf_id}.>"


def workflow_actor_filter(wf_id: str) -> str:
    return f"evt.{wf_id}.wf.*"


def workflow_event(wf_id: str, event_type: str) -> str:
    return f"evt.{wf_id}.wf.{event_type}"


def job_actor_filter(wf_id: str, job: str) -> str:
    return f"evt.{wf_id}.job.{job}.*"


def actor_filter_of(event_subject: str) -> str | None:
    """The actor filter an event subject belongs to (None when it has no actor's shape)."""
    tokens = event_subject.split(".")
    if len(tokens) == 4 and tokens[0] == "evt" and tokens[2] == "wf":
        return workflow_actor_filter(tokens[1])
    if len(tokens) == 5 and tokens[0] == "evt" and tokens[2] == "job":
        return job_actor_filter(tokens[1], tokens[3])
    return None


def job_event(wf_id: str, job: str, event_type: str) -> str:
    return f"evt.{wf_id}.job.{job}.{event_type}"


def events_of_type(event_type: str) -> str:
    """Every event of one type across all workflows, e.g. all ``JobFailed``."""
    return (
        f"evt.*.wf.{event_type}"
        if event_type.startswith("Workflow")
        else (f"evt.*.job.*.{event_type}")
    )


def command(name: str, wf_id: str) -> str:
    return f"cmd.{name}.{wf_id}"


def dispatch(labelset_token: str) -> str:
    return f"job.{labelset_token}"


def job_schedule(schedule_id: str) -> str:
    """Where a delayed dispatch waits (a message schedule) until it fires onto its job subject."""
    return f"jobsched.{schedule_id}"


def log(wf_id: str, job: str) -> str:
    return f"log.{wf_id}.{job}"


def timer_set(timer_id: str) -> str:
    return f"timer.set.{timer_id}"


def timer_fire(timer_id: str) -> str:
    return f"timer.fire.{timer_id}"


def cancel_notice(wf_id: str, job: str) -> str:
    """Core NATS push to a running job's worker: stop now (the job actor's log stays the truth)."""
    return f"ctl.cancel.{wf_id}.{job}"


def dead_letter(source: str) -> str:
    return f"dlq.{source}"


def direct_get(stream: str) -> str:
    """The server's direct-get API subject for ``stream`` (needs ``allow_direct``)."""
    return f"$JS.API.DIRECT.GET.{stream}"
