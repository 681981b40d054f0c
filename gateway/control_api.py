"""An operator's control of a run over HTTP: pause, resume, skip a job, retry, rerun from a job,
restart (``sdk.Client``'s).

200 with the outcome once the engine applied it, 202 when no engine answered within the body's
``timeout`` (the request is stored and applied when one runs), 409 ``refused`` when it makes no
sense in the workflow's state, 404 for an unknown workflow or job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from gateway.context import context
from gateway.models import ControlBody, ControlOut, RerunBody, SetVarsBody, SkipBody
from gateway.web import Json, read_json, validated
from sdk.client import Client
from sdk.client.control import ControlResult

_DEFAULT_BY = "http"


async def _body(request: Request, model: type[ControlBody]) -> ControlBody:
    # An empty body is every default: ``curl -X POST .../pause`` is enough.
    return validated(model, await read_json(request, context(request).settings.max_body))


def _answer(result: ControlResult, job: str | None = None) -> Response:
    out = ControlOut(**result.to_json_dict(), job=job)
    # ``restarted_as`` in a restart's answer only: the others keep their documented shape.
    dumped = out.model_dump(exclude={"restarted_as"} if out.restarted_as is None else None)
    return Json(dumped, status_code=200 if result.applied else 202)


Command = Callable[..., Awaitable[ControlResult]]


def _workflow_command(
    pick: Callable[[Client], Command],
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a control of the whole workflow (``pick``: the client's method)."""

    async def endpoint(request: Request) -> Response:
        body = await _body(request, ControlBody)
        result = await pick(context(request).client)(
            request.path_params["workflow_id"],
            reason=body.reason,
            by=body.by or _DEFAULT_BY,
            answer_timeout=body.timeout,
        )
        return _answer(result)

    return endpoint


pause = _workflow_command(lambda client: client.pause)
resume = _workflow_command(lambda client: client.resume)
retry = _workflow_command(lambda client: client.retry)
restart = _workflow_command(lambda client: client.restart)


async def skip(request: Request) -> Response:
    body = await _body(request, SkipBody)
    assert isinstance(body, SkipBody)
    job = request.path_params["job"]
    result = await context(request).client.skip(
        request.path_params["workflow_id"],
        job,
        outputs={key: _text(value) for key, value in body.outputs.items()},
        reason=body.reason,
        by=body.by or _DEFAULT_BY,
        answer_timeout=body.timeout,
    )
    return _answer(result, job)


async def rerun(request: Request) -> Response:
    body = await _body(request, RerunBody)
    assert isinstance(body, RerunBody)
    result = await context(request).client.rerun(
        request.path_params["workflow_id"],
        from_job=body.from_job,
        reason=body.reason,
        by=body.by or _DEFAULT_BY,
        answer_timeout=body.timeout,
    )
    return _answer(result, body.from_job)


async def set_vars(request: Request) -> Response:
    body = await _body(request, SetVarsBody)
    assert isinstance(body, SetVarsBody)
    result = await context(request).client.set_vars(
        request.path_params["workflow_id"],
        body.values,
        reason=body.reason,
        by=body.by or _DEFAULT_BY,
        answer_timeout=body.timeout,
    )
    return _answer(result)


def _text(value: object) -> str:
    # Outputs are text (``::set-output``'s); JSON's true reads as the shell's "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
