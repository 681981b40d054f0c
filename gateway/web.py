"""HTTP plumbing shared by every route: JSON responses, JSON errors, bodies, roles.

Every error is JSON: ``{"error": "<what and why>", "code": "<slug>", "status": <n>}``, plus
``problems`` (every located problem, as the CLI prints them) for an invalid workflow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import structlog
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from events.definition_store import DefinitionConflict, DefinitionNotFound
from events.errors import CommandRefused, InvalidWorkflow, JetworkError, WorkflowNotFound
from events.namespaces import InvalidNamespace
from events.quotas import QuotaExceeded
from events.schedule_store import ScheduleNotFound
from gateway.auth import Role, Tokens, bearer
from gateway.leases import LeaseGone, LeaseUnknown
from sdk.errors import InvalidArgument, JobNotFound, WorkflowNotStarted

_log = structlog.get_logger("jetwork.gateway")
M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """An answer other than 2xx, with its status, a slug and the message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        problems: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = problems
        self.headers = headers


def error_response(error: ApiError) -> Json:
    body: dict[str, Any] = {"error": error.message, "code": error.code, "status": error.status}
    if error.problems is not None:
        body["problems"] = error.problems
    return Json(body, status_code=error.status, headers=error.headers)


def translate(exc: Exception) -> ApiError:
    """The HTTP answer for an exception raised while serving a request."""
    match exc:
        case ApiError():
            return exc
        case LeaseGone():
            return ApiError(409, "lease_gone", str(exc))
        case LeaseUnknown():
            return ApiError(404, "unknown_lease", str(exc))
        case InvalidWorkflow():
            return ApiError(422, "invalid_workflow", str(exc), problems=list(exc.problems))
        case CommandRefused():
            return ApiError(409, "refused", str(exc))
        case WorkflowNotStarted():
            return ApiError(409, "not_started", str(exc))
        case WorkflowNotFound():
            return ApiError(404, "unknown_workflow", str(exc))
        case JobNotFound():
            return ApiError(404, "unknown_job", str(exc))
        case InvalidArgument():
            return ApiError(422, "invalid_argument", str(exc))
        case DefinitionNotFound():
            return ApiError(404, "unknown_definition", str(exc))
        case DefinitionConflict():
            return ApiError(409, "conflict", str(exc))
        case InvalidNamespace():
            return ApiError(422, "invalid_namespace", str(exc))
        case QuotaExceeded():
            return ApiError(429, "over_quota", str(exc))
        case ScheduleNotFound():
            return ApiError(404, "unknown_schedule", str(exc))
        case HTTPException():
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
            headers = dict(exc.headers) if exc.headers else None
            return ApiError(exc.status_code, code, str(exc.detail), headers=headers)
        case JetworkError() if exc.retryable:
            return ApiError(503, "unavailable", f"try again: {exc}", headers={"Retry-After": "1"})
        case JetworkError():
            return ApiError(500, "failed", str(exc))
    _log.exception("request failed", exc_info=exc)
    return ApiError(500, "internal", f"internal error: {type(exc).__name__}")


async def on_error(_request: Request, exc: Exception) -> Response:
    return error_response(translate(exc))


# --- bodies --------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 past ``limit`` bytes (checked before and while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body (``None`` when empty); 400 with the reason when it is not JSON."""
    body = await read_body(request, limit)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def validated(model: type[M], data: Any, *, what: str = "the body") -> M:
    """``data`` as ``model``; 422 listing every problem with its location."""
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        problems = [f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors()]
        message = f"{what} is invalid: " + "; ".join(problems)
        raise ApiError(422, "invalid_body", message, problems=problems) from None


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<body>"


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")


# --- roles ---------------------------------------------------------------------------------------


def guarded(role: Role | None, endpoint: Endpoint, tokens: Tokens) -> Endpoint:
    """``endpoint`` behind a bearer token of ``role`` (or admin); open without tokens."""
    if role is None or not tokens:
        return endpoint

    async def check(request: Request) -> Response:
        token = bearer(request.headers.get("authorization"))
        if token is None:
            raise ApiError(
                401,
                "unauthenticated",
                "this needs a bearer token (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        held = tokens.role_of(token)
        if held is None:
            raise ApiError(
                401, "unauthenticated", "unknown token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not held.may(role):
            raise ApiError(403, "forbidden", f"a {held} token may not do this: it needs {role}")
        return await endpoint(request)

    return check
