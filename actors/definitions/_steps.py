"""Reading the job kinds that need no worker (``set``, ``sleep``, ``until``) and n-of-m joins
(``needs_at_least``), logging every problem with its location; and checking the keys read from
``set`` jobs' outputs.

``JOB_KINDS`` is the table of keys that say what a job does: a job has exactly one of them.
A new kind of job adds its key (and a few words on what it takes) there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._jobs import Expression, JobDraft
from actors.definitions._problems import Path, ProblemLog
from actors.definitions._references import _readable_paths as readable_paths

# What each kind of job is given, for messages ("a job needs one of run (a shell command) ...").
JOB_KINDS: Final = {
    "run": "a shell command",
    "uses": "a handler name",
    "wait_for": "a signal or webhook to wait for",
    "workflow": "a sub-workflow to run",
    "set": "outputs from expressions",
    "sleep": "a duration to wait",
    "until": "a time to wait for",
    "http": "a request jetwork makes",
}
# Fields that only make sense for a job a worker runs.
_WORKER_FIELDS: Final = (
    "labels",
    "timeout",
    "dispatch_timeout",
    "retry",
    "delay",
    "at",
    "rate_limit",
    "concurrency",
    # a fan-out runs instances of a worker's job
    "strategy",
    "for_each",
    "max_parallel",
    "fail_fast",
    "priority",
)
_INLINE_KINDS: Final = ("set", "sleep", "until")
AT_LEAST_FIELDS: Final = ("count", "of")


def check_kind(body: Mapping[Any, Any], path: Path, log: ProblemLog) -> None:
    """Exactly one of the ``JOB_KINDS`` keys, and no worker-only field on an inline kind."""
    given = [key for key in JOB_KINDS if body.get(key) is not None]
    if not given:
        kinds = ", ".join(f"{key} ({what})" for key, what in JOB_KINDS.items())
        log.add(path, f"a job needs one of {kinds}")
    elif len(_conflicts(given)) > 1:
        log.add(path, f"set only one of {', '.join(given)}: each says what the job does")
    inline = [key for key in given if key in _INLINE_KINDS]
    if inline:
        for key in _WORKER_FIELDS:
            if body.get(key) is not None:
                log.add((*path, key), f"a {inline[0]} job runs on no worker: {key} does not apply")


def _conflicts(given: list[str]) -> list[str]:
    # run or uses beside wait_for, workflow or http is reported where those are read (``_waits``,
    # ``_subflows``, ``http_step``): not twice.
    if "wait_for" in given or "workflow" in given or "http" in given:
        return [key for key in given if key not in ("run", "uses")]
    return given


def read_steps(body: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """What ``read_job`` leaves to this module: the job's kind, its inline step, its n-of-m."""
    if not isinstance(body, Mapping):
        return  # read_job reported it
    check_kind(body, path, log)
    read_inline(body, path, draft, log)
    read_at_least(body.get("needs_at_least"), (*path, "needs_at_least"), draft, log)


def read_inline(body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """``set``, ``sleep`` and ``until`` into ``draft``."""
    if body.get("set") is not None:
        draft.fields["set"] = _templates(body["set"], (*path, "set"), draft, log)
    if body.get("sleep") is not None:
        seconds = f.duration(body["sleep"], (*path, "sleep"), log, positive=False)
        if seconds is not None:
            draft.fields["sleep"] = seconds
    if body.get("until") is not None:
        moment = f.timestamp(body["until"], (*path, "until"), log)
        if moment is not None:
            draft.fields["until"] = moment


def _templates(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> dict[str, str]:
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping of output names to expressions, got {f.describe(value)}")
        return {}
    if not value:
        log.add(path, "empty: name at least one output")
    found: dict[str, str] = {}
    for name, raw in value.items():
        where = (*path, name)
        if f.token(name, where, log, what="output name") is None:
            continue
        text = _scalar_text(raw)
        if text is None:
            log.add(where, f"expected text or a ${{{{ }}}} expression, got {f.describe(raw)}")
            continue
        found[name] = text
        draft.expressions.append(Expression(where, text, is_condition=False))
    return found


def _scalar_text(raw: object) -> str | None:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float | str):
        return str(raw)
    return None


def read_at_least(value: object, path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """``needs_at_least: {count: 2, of: [a, b, c]}``."""
    if value is None:
        return
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping with count and of, got {f.describe(value)}")
        return
    f.check_fields(value, path, AT_LEAST_FIELDS, log)
    names = f.name_list(value.get("of"), (*path, "of"), log, what="job name")
    if value.get("of") is None:
        log.add(path, "of: missing: list the jobs, e.g. of: [a, b, c]")
    count = value.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        log.add((*path, "count"), f"must be a whole number >= 1, got {f.short(count)}")
        return
    if names and count > len(names):
        log.add((*path, "count"), f"{count} of {len(names)} jobs can never be met")
        return
    draft.needs_at_least = names
    draft.fields["needs_at_least"] = {"count": count, "of": tuple(name for name, _ in names)}


def check_output_keys(
    jobs: Mapping[str, JobDraft], outputs: Mapping[str, str], log: ProblemLog
) -> None:
    """``needs.<job>.outputs.<key>`` of a ``set`` job must name one of its outputs: its keys are
    known before it runs (a worker's job may write any key, so only those are checked)."""
    drafts = [(name, draft.expressions) for name, draft in jobs.items()]
    drafts.append(
        ("", [Expression(("outputs", key), text, False) for key, text in outputs.items()])
    )
    quiet = ProblemLog()  # syntax problems were reported where the expressions were read
    for _, expressions in drafts:
        for expression in expressions:
            for path in sorted(readable_paths(expression, quiet)):
                problem = _unknown_key(path, jobs)
                if problem is not None:
                    log.add(expression.path, problem)


def _unknown_key(path: tuple[str, ...], jobs: Mapping[str, JobDraft]) -> str | None:
    if len(path) < 4 or path[0] != "needs" or path[2] != "outputs" or path[1] not in jobs:
        return None
    produced = jobs[path[1]].fields.get("set")
    if not isinstance(produced, dict) or path[3] in produced:
        return None
    known = ", ".join(produced) or "none"
    return (
        f"needs.{path[1]}.outputs.{path[3]}: job {path[1]!r} sets no output {path[3]!r} "
        f"(it sets: {known}){f.did_you_mean(path[3], produced)}"
    )
