"""Every JetStream stream, subject and bucket name jetwork uses, in one place.

Subject layout (see docs/architecture.md, "Subjects"); ``<p>`` is the workflow's partition
(``partition_of``), so that one consumer filter selects everything one engine owns:
- ``evt.<p>.<wf>.wf.<EventType>``                     workflow actor events
- ``evt.<p>.<wf>.job.<job>.<EventType>``              job actor events
- ``evt.<p>.<wf>.job.<job>.JobQueued.<labelset>``     a queued job: the event is the dispatch
- ``evt.<p>.<wf>.job.<job>.JobQueued.<labelset>.p<N>`` the same at priority N (not the default)
- ``cmd.<p>.<name>.<wf>``                             commands (start, cancel, ...)
- ``cmd.<p>.timer.<id>`` / ``cmdsched.<p>.<id>``      durable timers (message schedules)
- ``log.<wf>.<job>``                                  job log chunks
- ``log.<wf>.<job>.progress``                         progress frames and rolling summary
- ``ctl.cancel.<wf>.<job>``                           core NATS cancel notice to a running job
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Final, NamedTuple

from events import priority

EVENTS_STREAM: Final = "JW_EVENTS"
COMMANDS_STREAM: Final = "JW_COMMANDS"
LOGS_STREAM: Final = "JW_LOGS"
DEAD_LETTERS_STREAM: Final = "JW_DEAD_LETTERS"
INDEX_STREAM: Final = "JW_INDEX"

EVENTS_ALL: Final = "evt.>"
COMMANDS_ALL: Final = "cmd.>"
TIMER_SCHEDULES_ALL: Final = "cmdsched.>"
LOGS_ALL: Final = "log.>"
DEAD_LETTERS_ALL: Final = "dlq.>"
CANCEL_NOTICES_ALL: Final = "ctl.cancel.>"
INDEX_ALL: Final = "wfidx.>"

KV_WORKFLOWS: Final = "jw_workflows"
KV_WORKERS: Final = "jw_workers"
KV_LABELSETS: Final = "jw_labelsets"
KV_PROJECTOR: Final = "jw_projector"
KV_PARTITIONS: Final = "jw_partitions"
KV_GATEWAY: Final = "jw_gateway"
KV_CONTROL: Final = "jw_control"
KV_RATES: Final = "jw_rates"
KV_CONCURRENCY: Final = "jw_concurrency"
# Definitions by name and version, and schedules (events/definition_store.py, schedule_store.py).
KV_DEFINITIONS: Final = "jw_definitions"
KV_SCHEDULES: Final = "jw_schedules"

PARTITIONS: Final = 16
"""How many partitions workflows are hashed into; one engine owns a partition at a time.

Fixed for a deployment: every process must agree (``ensure_topology`` records it on the events
stream and refuses a process with another count). See docs/architecture.md, "Partitions".
"""
JOB_QUEUED: Final = "JobQueued"

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


# Hot: every subject of a workflow is built from it, several per event (cached, ~2x cheaper).
@functools.lru_cache(maxsize=1 << 16)
def partition_of(wf_id: str) -> int:
    """The partition of a workflow: CRC-32 (IEEE, as zlib's) of its id, modulo ``PARTITIONS``.

    Any language has CRC-32, so any client can address a workflow's subjects.
    """
    return zlib.crc32(wf_id.encode()) % PARTITIONS


@functools.lru_cache(maxsize=1 << 16)
def _prefix(wf_id: str) -> str:
    return f"evt.{partition_of(wf_id)}.{wf_id}"


def workflow_events(wf_id: str) -> str:
    """All events of one workflow, workflow and job actors alike, in log order."""
    return f"{_prefix(wf_id)}.>"


def workflow_actor_filter(wf_id: str) -> str:
    return f"{_prefix(wf_id)}.wf.*"


def workflow_event(wf_id: str, event_type: str) -> str:
    return f"{_prefix(wf_id)}.wf.{event_type}"


def job_actor_filter(wf_id: str, job: str) -> str:
    # ``>``, not ``*``: a JobQueued subject has one more token, its label set.
    return f"{_prefix(wf_id)}.job.{job}.>"


def job_event(wf_id: str, job: str, event_type: str) -> str:
    return f"{_prefix(wf_id)}.job.{job}.{event_type}"


def job_queued(wf_id: str, job: str, labelset_token: str, level: int | None = None) -> str:
    """Where a queued job is appended: a label set's workers consume exactly these. ``level``:
    a priority other than the default (``events.priority``), one more token."""
    if level is None:
        return f"{_prefix(wf_id)}.job.{job}.{JOB_QUEUED}.{labelset_token}"
    return f"{_prefix(wf_id)}.job.{job}.{JOB_QUEUED}.{labelset_token}.{priority.token(level)}"


def queued_for(labelset_token: str, level: int | None = None) -> str:
    """Every ``JobQueued`` of one label set (at one priority level), across workflows: that
    label set's (level's) dispatch."""
    if level is None:
        return f"evt.*.*.job.*.{JOB_QUEUED}.{labelset_token}"
    return f"evt.*.*.job.*.{JOB_QUEUED}.{labelset_token}.{priority.token(level)}"


class EventSubject(NamedTuple):
    """An event subject taken apart: ``job`` is None for a workflow actor's event."""

    partition: str
    workflow_id: str
    job: str | None
    event_type: str


def parse_event_subject(subject: str) -> EventSubject | None:
    """The parts of an event subject, or None when it has no event's shape."""
    tokens = subject.split(".")
    n = len(tokens)
    if n < 5 or tokens[0] != "evt":
        return None
    if n == 5 and tokens[3] == "wf":
        return EventSubject(tokens[1], tokens[2], None, tokens[4])
    if tokens[3] == "job" and (n == 6 or (n in (7, 8) and tokens[5] == JOB_QUEUED)):
        return EventSubject(tokens[1], tokens[2], tokens[4], tokens[5])
    return None


def workflow_of(subject: str) -> str:
    """The workflow id of an event subject ('' when it is not one)."""
    tokens = subject.split(".", 3)
    return tokens[2] if len(tokens) > 3 and tokens[0] == "evt" else ""


def actor_filter_of(event_subject: str) -> str | None:
    """The actor filter an event subject belongs to (None when it has no actor's shape)."""
    parsed = parse_event_subject(event_subject)
    if parsed is None:
        return None
    if parsed.job is None:
        return workflow_actor_filter(parsed.workflow_id)
    return job_actor_filter(parsed.workflow_id, parsed.job)


def events_of_type(event_type: str) -> str:
    """Every event of one type across all workflows, e.g. all ``JobFailed``."""
    if event_type.startswith("Workflow"):
        return f"evt.*.*.wf.{event_type}"
    if event_type == JOB_QUEUED:  # the label set, and a priority level when not the default
        return f"evt.*.*.job.*.{JOB_QUEUED}.>"
    return f"evt.*.*.job.*.{event_type}"


# What workers append that the engine must react to: the end of an attempt. (Claims change no
# decision: the engine treats a queued and a running job alike, and reads a job's claims when it
# needs them, for a timeout or after a conflict.)
RESULT_EVENTS: Final = (
    "JobSucceeded",
    "JobFailed",
    "JobRetryScheduled",
    "JobCancelled",
    "JobParked",  # a handler's InProgress: the engine arms its callback (actors/parking.py)
)


def partition_results(partition: int) -> list[str]:
    """The filters of the job events one partition's owning engine reacts to."""
    return [f"evt.{partition}.*.job.*.{event_type}" for event_type in RESULT_EVENTS]


def command(name: str, wf_id: str) -> str:
    return f"cmd.{partition_of(wf_id)}.{name}.{wf_id}"


def partition_commands(partition: int) -> str:
    """Commands and fired timers of one partition: what its owning engine consumes."""
    return f"cmd.{partition}.>"


def timer_set(partition: int, timer_id: str) -> str:
    """Where a durable timer waits (a message schedule) until it fires onto ``timer_fire``."""
    return f"cmdsched.{partition}.{timer_id}"


def timer_fire(partition: int, timer_id: str) -> str:
    return f"cmd.{partition}.timer.{timer_id}"


def log(wf_id: str, job: str) -> str:
    return f"log.{wf_id}.{job}"


def progress(wf_id: str, job: str) -> str:
    """A job's progress frames (``ctx.progress``), beside its log on JW_LOGS (``log.>``)."""
    return f"log.{wf_id}.{job}.progress"


def progress_all(wf_id: str) -> str:
    """The progress frames of every job of one workflow."""
    return f"log.{wf_id}.*.progress"


def cancel_notice(wf_id: str, job: str) -> str:
    """Core NATS push to a running job's worker: stop now (the job actor's log stays the truth)."""
    return f"ctl.cancel.{wf_id}.{job}"


def dead_letter(source: str) -> str:
    return f"dlq.{source}"


def direct_get(stream: str) -> str:
    """The server's direct-get API subject for ``stream`` (needs ``allow_direct``)."""
    return f"$JS.API.DIRECT.GET.{stream}"


# Schedules: the ticker's durable next tick waits on ``cmdsched.sched.<name>`` and fires onto
# ``cmd.sched.tick.<name>``; ``cmd.sched.arm.<name>`` asks a ticker to arm a schedule's next tick
# (after an add or a resume). ``sched`` is no partition number: no engine's consumer sees them.
SCHEDULE_TICKS: Final = "cmd.sched.>"


def schedule_tick_set(name: str) -> str:
    return f"cmdsched.sched.{name}"


def schedule_tick_fire(name: str) -> str:
    return f"cmd.sched.tick.{name}"


def schedule_arm(name: str) -> str:
    return f"cmd.sched.arm.{name}"
