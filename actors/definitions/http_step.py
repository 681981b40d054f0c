"""The ``http:`` step: reading and checking it, rendering its templates, judging its polls.

Validation logs every problem with its location, as for any job field. Templates (``${{ }}``) in
``url``, header values and ``body`` are checked like those of ``run`` and rendered by the engine
when the job is queued; ``${{ secrets.NAME }}`` in a header value is kept as written (the built-in
worker resolves it from its environment). ``poll.until`` reads ``response`` (``status``, ``body``,
``headers``) and is evaluated by the worker after each response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from actors.definitions import _fields as f
from actors.definitions._expr_runtime import OPERATORS, Evaluator, functions, truthy
from actors.definitions._expr_syntax import compile_expression
from actors.definitions._expr_tokens import ExpressionError, shorten
from actors.definitions._problems import Path, ProblemLog
from actors.definitions.templating import render
from events.http_step import METHODS, SECRET_REF, HttpStep

if TYPE_CHECKING:
    from actors.definitions._jobs import JobDraft
    from actors.definitions.expressions import ExpressionContext

HTTP_FIELDS: Final = ("url", "method", "headers", "body", "timeout", "expect_status", "poll")
POLL_FIELDS: Final = ("interval", "until", "max_polls")
# Fields that make no sense beside http: (the step runs in jetwork server, not on a worker).
_NOT_WITH_HTTP: Final = {
    "run": "an http step makes a request, it runs no command: drop run",
    "uses": "an http step runs in jetwork server, not in a handler: drop uses",
    "with": "with passes arguments to a uses handler; an http step has none",
    "labels": "an http step runs in jetwork server, not on a worker: labels do not apply",
}
_RESPONSE: Final = frozenset({"response"})


def read_http(body: Mapping[Any, Any], path: Path, draft: JobDraft, log: ProblemLog) -> None:
    """Read ``body["http"]`` (present) into ``draft``, logging every problem."""
    from actors.definitions._jobs import Expression  # _jobs imports this module

    for key, why in _NOT_WITH_HTTP.items():
        if body.get(key) is not None:
            log.add((*path, key), why)
    where = (*path, "http")
    value = body["http"]
    if not isinstance(value, Mapping):
        log.add(where, f"expected a mapping with url (and method, headers, body …), got "
                f"{f.describe(value)}")  # fmt: skip
        return
    f.check_fields(value, where, HTTP_FIELDS, log)
    step: dict[str, Any] = {}
    templates: list[tuple[Path, str]] = []
    url = _read_url(value.get("url"), (*where, "url"), log)
    if url is not None:
        step["url"] = url
        templates.append(((*where, "url"), url))
    if value.get("method") is not None:
        step["method"] = _read_method(value["method"], (*where, "method"), log)
    if value.get("headers") is not None:
        step["headers"] = _read_headers(value["headers"], (*where, "headers"), log)
        for name, text in step["headers"].items():
            templates.append(((*where, "headers", name), SECRET_REF.sub("", text)))
    if value.get("body") is not None:
        step["body"] = f.json_value(value["body"], (*where, "body"), log)
        templates += _strings(step["body"], (*where, "body"))
    if value.get("timeout") is not None:
        step["timeout"] = f.duration(value["timeout"], (*where, "timeout"), log, positive=True)
    if value.get("expect_status") is not None:
        step["expect_status"] = _read_statuses(
            value["expect_status"], (*where, "expect_status"), log
        )
    if value.get("poll") is not None:
        step["poll"] = _read_poll(value["poll"], (*where, "poll"), log)
    draft.fields["http"] = step
    draft.expressions += [Expression(p, text, is_condition=False) for p, text in templates]


def _read_url(value: object, path: Path, log: ProblemLog) -> str | None:
    if value is None:
        log.add(path, "missing: an http step needs the url to request")
        return None
    url = f.text(value, path, log, what="url")
    if url is None:
        return None
    if "${{" in url.split("://", 1)[0]:
        return url  # the scheme itself is templated: checked when the request is made
    problem = url_problem(url if "${{" not in url else url.split("${{", 1)[0] + "x")
    if problem is not None:
        log.add(path, problem)
        return None
    return url


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be requested (only http and https, with a host), or None."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme!r}" if parts.scheme else "none"
        return f"{f.short(url)}: only http and https URLs are allowed (scheme {shown})"
    if not parts.hostname:
        return f"{f.short(url)} has no host"
    return None


def _read_method(value: object, path: Path, log: ProblemLog) -> str | None:
    if not isinstance(value, str) or value.upper() not in METHODS:
        log.add(path, f"method must be one of {', '.join(METHODS)}, got {f.short(value)}")
        return None
    return value.upper()


def _read_headers(value: object, path: Path, log: ProblemLog) -> dict[str, str]:
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping of header: value, got {f.describe(value)}")
        return {}
    headers: dict[str, str] = {}
    for name, raw in value.items():
        if not isinstance(name, str) or not name or not all(33 <= ord(c) < 127 for c in name):
            log.add((*path, name), f"{f.short(name)} is not a valid header name")
            continue
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            log.add((*path, name), f"expected text or a number, got {f.describe(raw)}")
            continue
        headers[name] = str(raw)
    return headers


def _read_statuses(value: object, path: Path, log: ProblemLog) -> tuple[int, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    statuses: list[int] = []
    for index, item in enumerate(items):
        where = (*path, index) if isinstance(value, list | tuple) else path
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            log.add(where, f"expected an HTTP status from 100 to 599, got {f.short(item)}")
            continue
        statuses.append(item)
    if not items:
        log.add(path, "is empty: list the statuses that mean success, e.g. [200, 201]")
    return tuple(statuses)


def _read_poll(value: object, path: Path, log: ProblemLog) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping with interval and until, got {f.describe(value)}")
        return None
    f.check_fields(value, path, POLL_FIELDS, log)
    poll: dict[str, Any] = {}
    if value.get("interval") is None:
        log.add(path, "missing interval: how long to wait between requests, e.g. 5s")
    else:
        poll["interval"] = f.duration(value["interval"], (*path, "interval"), log, positive=True)
    until = value.get("until")
    if until is None:
        log.add(path, "missing until: the condition over response that ends the polling")
    elif f.text(until, (*path, "until"), log, what="until") is not None:
        assert isinstance(until, str)
        for problem in check_until(until):
            log.add((*path, "until"), problem)
        poll["until"] = until
    max_polls = value.get("max_polls")
    if max_polls is not None:
        if isinstance(max_polls, bool) or not isinstance(max_polls, int) or max_polls < 1:
            log.add((*path, "max_polls"), f"must be a whole number >= 1, got {f.short(max_polls)}")
        else:
            poll["max_polls"] = max_polls
    return poll


def check_until(expression: str) -> list[str]:
    """Problems of a ``poll.until`` condition: it reads ``response``, not needs/inputs/env."""
    try:
        compiled = compile_expression(expression, _RESPONSE)
    except ExpressionError as error:
        return [str(error)]
    others = sorted({path[0] for path in compiled.references} - _RESPONSE)
    if others:
        return [f"until reads only response (status, body, headers), not {', '.join(others)}"]
    if not compiled.references:
        return ["never reads response: the condition would never change between polls"]
    return []


def _strings(value: Any, path: Path) -> list[tuple[Path, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _strings(item, (*path, key))]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _strings(item, (*path, i))]
    return []


# --- at run time ------------------------------------------------------------------------------


def render_http(step: HttpStep, context: ExpressionContext) -> HttpStep:
    """``step`` with its templates rendered; ``${{ secrets.* }}`` kept. Raises ExpressionError."""
    headers = {name: _render_keeping_secrets(text, context) for name, text in step.headers.items()}
    return step.model_copy(
        update={
            "url": _render(step.url, context),
            "headers": headers,
            "body": _render_value(step.body, context),
        }
    )


def _render(text: str, context: ExpressionContext) -> str:
    return render(text, context) if "${{" in text else text


def _render_keeping_secrets(text: str, context: ExpressionContext) -> str:
    pieces: list[str] = []
    position = 0
    for match in SECRET_REF.finditer(text):
        pieces += [_render(text[position : match.start()], context), match.group(0)]
        position = match.end()
    pieces.append(_render(text[position:], context))
    return "".join(pieces)


def _render_value(value: Any, context: ExpressionContext) -> Any:
    if isinstance(value, str):
        return _render(value, context)
    if isinstance(value, dict):
        return {key: _render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, context) for item in value]
    return value


def poll_done(until: str, response: Mapping[str, Any]) -> bool:
    """Whether ``until`` holds for ``response``; raises ``ExpressionError``."""
    compiled = compile_expression(until, _RESPONSE)
    evaluator = Evaluator(
        operators=OPERATORS,
        functions=functions(success=True, failure=False, cancelled=False),
        names={"response": response},
    )
    try:
        return truthy(evaluator.eval(compiled.python, previously_parsed=compiled.tree))
    except ExpressionError:
        raise
    except Exception as error:  # user-written input: any failure is a fact about the expression
        raise ExpressionError(f"cannot evaluate {shorten(until.strip())!r}: {error}") from error
