"""Reading one job's fields into keyword arguments for ``JobDefinition``, logging every problem."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._problems import Path, ProblemLog
from actors.definitions._waits import read_wait
from actors.definitions.durations import format_duration
from actors.definitions.http_step import read_http
from events import priority
from events.definition import MAX_RATE_WINDOW, Backoff, OnFailure

JOB_FIELDS: Final = (
    "run",
    "uses",
    "with",
    "labels",
    "needs",
    "needs_any",
    "if",
    "env",
    "timeout",
    "dispatch_timeout",
    "retry",
    "on_failure",
    "delay",
    "at",
    "rate_limit",
    "concurrency",
    "wait_for",
    "workflow",
    "loop",
    "strategy",
    "for_each",
    "max_parallel",
    "fail_fast",
    # actors.definitions._steps reads these:
    "set",
    "sleep",
    "until",
    "needs_at_least",
    "http",
    "priority",
)
RETRY_FIELDS: Final = ("max_attempts", "backoff", "delay", "max_delay")
RATE_LIMIT_FIELDS: Final = ("limit", "per")
CONCURRENCY_FIELDS: Final = ("group", "limit", "cancel_in_progress")


@dataclass(frozen=True)
class Expression:
    """Text found in the definition that holds expressions, and where it was found."""

    path: Path
    text: str
    is_condition: bool  # a bare `if:` expression rather than a ${{ }} template


@dataclass
class JobDraft:
    """A job as read so far: model fields plus what the cross-job checks need."""

    fields: dict[str, Any]
    needs: list[tuple[str, Path]] = field(default_factory=list)
    needs_any: list[tuple[str, Path]] = field(default_factory=list)
    needs_at_least: list[tuple[str, Path]] = field(default_factory=list)
    expressions: list[Expression] = field(default_factory=list)

    @property
    def upstream(self) -> list[tuple[str, Path]]:
        return self.needs + self.needs_any + self.needs_at_least


def read_job(name: str, body: object, path: Path, log: ProblemLog) -> JobDraft:
    draft = JobDraft(fields={"name": name})
    if not isinstance(body, Mapping):
        log.add(path, f"a job must be a mapping of fields, got {f.describe(body)}")
        return draft
    f.check_fields(body, path, JOB_FIELDS, log)
    if body.get("http") is not None:
        read_http(body, path, draft, log)
    elif body.get("wait_for") is not None:  # a job that waits runs nothing
        for where, text in read_wait(body, path, draft.fields, log):
            draft.expressions.append(Expression(where, text, is_condition=False))
    else:
        _read_command(body, path, draft, log)
    _read_dependencies(body, path, draft, log)
    _read_condition(body.get("if"), (*path, "if"), draft, log)
    _read_env(body.get("env"), (*path, "env"), draft, log)
    _read_timing(body, path, draft, log)
    if body.get("retry") is not None:
        retry = read_retry(body["retry"], (*path, "retry"), log)
        if retry is not None:
            draft.fields["retry"] = retry
    if body.get("on_failure") is not None:
        _read_on_failure(body["on_failure"], (*path, "on_failure"), draft, log)
    if body.get("rate_limit") is not None:
        limit = read_rate_limit(body["rate_limit"], (*path, "rate_limit"), log)
        if limit is not None:
            draft.fields["rate_limit"] = limit
    if body.get("concurrency") is not None:
        _read_concurrency(body["concurrency"], (*path, "concurrency"), draft, log)
    if body.get("priority") is not None:
        draft.fields["priority"] = read_priority(body["priority"], (*path, "priority"), log)
    from actors.definitions._subflows import read_subflow

    read_subflow(body, path, draft, log)
    return draft


def _read_command(body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog) -> None:
    # Exactly one kind of job (run, uses, set ...): ``_steps.check_kind`` checks it.
    run, uses = body.get("run"), body.get("uses")
    if run is not None and f.text(run, (*path, "run"), log, what="run") is not None:
        draft.fields["run"] = run
        draft.expressions.append(Expression((*path, "run"), run, is_condition=False))
    # A handler name is a routing token (``job.@<uses>``), as workers require when registering.
    if (
        uses is not None
        and f.text(uses, (*path, "uses"), log, what="uses") is not None
        and f.token(uses, (*path, "uses"), log, what="handler name") is not None
    ):
        draft.fields["uses"] = uses
    if body.get("with") is not None:
        takes_with = uses if body.get("workflow") is None else body["workflow"]
        _read_with(body["with"], takes_with, (*path, "with"), draft, log)


def _read_with(value: object, uses: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    if uses is None:
        log.add(path, "with passes arguments to a uses handler; a run job has none")
        return
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping of arguments, got {f.describe(value)}")
        return
    arguments = f.json_value(value, path, log)
    draft.fields["with"] = arguments
    _collect_templates(arguments, path, draft)


def _collect_templates(value: Any, path: Path, draft: JobDraft) -> None:
    if isinstance(value, str):
        draft.expressions.append(Expression(path, value, is_condition=False))
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect_templates(item, (*path, key), draft)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect_templates(item, (*path, index), draft)


def _read_dependencies(
    body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog
) -> None:
    if body.get("labels") is not None:
        read_labels(body["labels"], (*path, "labels"), draft, log)
    for key in ("needs", "needs_any"):
        if body.get(key) is not None:
            names = f.name_list(body[key], (*path, key), log, what="job name")
            setattr(draft, key, names)
            draft.fields[key] = tuple(name for name, _ in names)


def _read_condition(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    if value is None:
        return
    if isinstance(value, bool):  # `if: false` in YAML is a boolean, and a fine condition
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        log.add(path, f"expected an expression, got {f.describe(value)}")
        return
    if value.strip():
        draft.fields["if"] = value
        draft.expressions.append(Expression(path, value, is_condition=True))


def _read_env(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    if value is None:
        return
    env = f.env_map(value, path, log)
    draft.fields["env"] = env
    for name, text in env.items():
        draft.expressions.append(Expression((*path, name), text, is_condition=False))


def _read_timing(body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog) -> None:
    if body.get("timeout") is not None:
        draft.fields["timeout"] = f.duration(
            body["timeout"], (*path, "timeout"), log, positive=True
        )
    if body.get("dispatch_timeout") is not None:
        draft.fields["dispatch_timeout"] = f.duration(
            body["dispatch_timeout"], (*path, "dispatch_timeout"), log, positive=True
        )
    if body.get("delay") is not None:
        draft.fields["delay"] = f.duration(body["delay"], (*path, "delay"), log, positive=False)
    if body.get("at") is not None:
        draft.fields["at"] = f.timestamp(body["at"], (*path, "at"), log)
    if body.get("delay") is not None and body.get("at") is not None:
        log.add(path, "set delay or at, not both: both say when the job may start")


def _read_on_failure(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    choices = [choice.value for choice in OnFailure]
    if value not in choices:
        log.add(path, f"on_failure must be one of {', '.join(choices)}, got {f.short(value)}")
        return
    draft.fields["on_failure"] = value


def _read_concurrency(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    found, template = read_concurrency(value, path, log)
    if template is not None:
        draft.expressions.append(Expression((*path, "group"), template, is_condition=False))
    if found is not None:
        draft.fields["concurrency"] = found


def read_concurrency(
    value: object, path: Path, log: ProblemLog
) -> tuple[dict[str, Any] | None, str | None]:
    """``concurrency: deploy`` or ``{group: "deploy-${{ inputs.env }}", limit: 1,
    cancel_in_progress: false}`` (a job's or a workflow's): the fields, and the group's template
    when it has one (its references are checked where it is read)."""
    if isinstance(value, str):
        value = {"group": value}
    if not isinstance(value, Mapping):
        log.add(
            path,
            "expected a group name or a mapping {group, limit, cancel_in_progress}, "
            f"got {f.describe(value)}",
        )
        return None, None
    f.check_fields(value, path, CONCURRENCY_FIELDS, log)
    found: dict[str, Any] = {}
    template = None
    group = value.get("group")
    if group is None:
        log.add((*path, "group"), "missing: the group's name, e.g. group: deploy-${{ inputs.env }}")
    elif f.text(group, (*path, "group"), log, what="group") is not None:
        if "${{" in group:
            template = group
            found["group"] = group
        elif f.token(group, (*path, "group"), log, what="group name") is not None:
            found["group"] = group
    limit = value.get("limit", 1)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        log.add((*path, "limit"), f"must be a whole number >= 1, got {f.short(limit)}")
    else:
        found["limit"] = limit
    cancel = value.get("cancel_in_progress", False)
    if not isinstance(cancel, bool):
        log.add((*path, "cancel_in_progress"), f"must be true or false, got {f.short(cancel)}")
    else:
        found["cancel_in_progress"] = cancel
    return (found if len(found) == 3 else None), template


def read_priority(value: object, path: Path, log: ProblemLog) -> int | None:
    """``priority: 1..10``: dispatched before lower ones when workers are scarce."""
    why = priority.problem(value)
    if why is not None:
        log.add(path, why)
        return None
    assert isinstance(value, int)
    return value


def read_rate_limit(value: object, path: Path, log: ProblemLog) -> dict[str, Any] | None:
    """``rate_limit: {limit: 100, per: 60s}``: at most ``limit`` starts per ``per`` (<= 1 day)."""
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping {{limit, per}}, got {f.describe(value)}")
        return None
    f.check_fields(value, path, RATE_LIMIT_FIELDS, log)
    limit, per = value.get("limit"), value.get("per")
    found: dict[str, Any] = {}
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        log.add((*path, "limit"), f"must be a whole number >= 1, got {f.short(limit)}")
    else:
        found["limit"] = limit
    if per is None:
        log.add((*path, "per"), "missing: the window, e.g. per: 60s")
    else:
        seconds = f.duration(per, (*path, "per"), log, positive=True)
        if seconds is not None and seconds > MAX_RATE_WINDOW:
            log.add((*path, "per"), f"at most 1d, got {format_duration(seconds)}")
        elif seconds is not None:
            found["per"] = seconds
    return found if len(found) == 2 else None


def read_retry(value: object, path: Path, log: ProblemLog) -> dict[str, Any] | None:
    """``retry: 3`` or ``retry: {max_attempts, backoff, delay, max_delay}``.

    A ``delay`` without a ``backoff`` means ``fixed``: nobody writes a delay meaning "ignore it".
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"max_attempts": value}
    if not isinstance(value, Mapping):
        log.add(path, f"expected a number of attempts or a mapping, got {f.describe(value)}")
        return None
    f.check_fields(value, path, RETRY_FIELDS, log)
    retry: dict[str, Any] = {}
    attempts = value.get("max_attempts")
    if attempts is not None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            log.add(
                (*path, "max_attempts"), f"must be a whole number >= 1, got {f.short(attempts)}"
            )
        else:
            retry["max_attempts"] = attempts
    for key in ("delay", "max_delay"):
        if value.get(key) is not None:
            retry[key] = f.duration(value[key], (*path, key), log, positive=False)
    backoff = _read_backoff(value.get("backoff"), retry.get("delay"), path, log)
    if backoff is not None:
        retry["backoff"] = backoff
    _check_retry_delays(retry, path, log)
    return retry


def _read_backoff(value: object, delay: float | None, path: Path, log: ProblemLog) -> str | None:
    choices = [choice.value for choice in Backoff]
    if value is None:
        return Backoff.FIXED.value if delay else None
    if value not in choices:
        log.add((*path, "backoff"), f"must be one of {', '.join(choices)}, got {f.short(value)}")
        return None
    if value == Backoff.NONE.value and delay:
        log.add((*path, "delay"), "has no effect with backoff: none; drop it or pick a backoff")
    elif value != Backoff.NONE.value and not delay:
        log.add((*path, "backoff"), f"{value} backoff needs a delay > 0, e.g. delay: 1s")
    return str(value)


def _check_retry_delays(retry: Mapping[str, Any], path: Path, log: ProblemLog) -> None:
    delay, max_delay = retry.get("delay"), retry.get("max_delay")
    if delay is not None and max_delay is not None and max_delay < delay:
        cap, wait = format_duration(max_delay), format_duration(delay)
        log.add((*path, "max_delay"), f"max_delay ({cap}) is shorter than delay ({wait})")


def read_labels(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """``labels``: names, or ``${{ }}`` templates rendered when the job is queued."""
    items = value if isinstance(value, list) else [value]
    if not any(isinstance(item, str) and "${{" in item for item in items):
        labels = f.name_list(value, path, log, what="label")
        draft.fields["labels"] = tuple(label for label, _ in labels)
        return
    kept: list[str] = []
    for index, item in enumerate(items):
        where = (*path, index) if isinstance(value, list) else path
        if isinstance(item, str) and "${{" in item:
            kept.append(item)
            draft.expressions.append(Expression(where, item, is_condition=False))
        elif f.token(item, where, log, what="label") is not None:
            assert isinstance(item, str)
            kept.append(item)
    draft.fields["labels"] = tuple(kept)
