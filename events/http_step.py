"""The ``http:`` step, pure data: a request that ``jetwork server`` makes itself.

A job with ``http:`` is dispatched like any other job, to the reserved handler ``HTTP_HANDLER``
(its label set is ``@jetwork-http``), which the built-in worker inside ``jetwork server`` serves
(``sdk.worker.executors.http_step``): leases, retries, timeouts, cancellation and results are the
ordinary job machinery. The engine renders ``${{ }}`` templates into the ``JobSpec``'s copy of
the step; ``${{ secrets.NAME }}`` in a header value is left as written and resolved from the
server's environment only when the request is made, so a secret is never in the log.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

HTTP_HANDLER: Final = "jetwork-http"
"""The reserved handler name http steps are routed by (never register a handler with it)."""
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
DEFAULT_MAX_POLLS: Final = 100
SECRET_REF: Final = re.compile(r"\$\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
"""``${{ secrets.NAME }}`` in a header value: ``NAME`` from the server's environment."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpPoll(_Frozen):
    """Repeat the request every ``interval`` seconds until ``until`` (over ``response``) holds."""

    interval: float = Field(gt=0)
    until: str
    max_polls: int = Field(default=DEFAULT_MAX_POLLS, ge=1)


class HttpStep(_Frozen):
    """One request. ``expect_status`` empty means any 2xx; ``body`` text is sent as is, any
    other JSON value as JSON. ``timeout`` bounds each request (the job's ``timeout`` the attempt).
    """

    url: str
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    timeout: float = Field(default=DEFAULT_REQUEST_TIMEOUT, gt=0)
    expect_status: tuple[int, ...] = ()
    poll: HttpPoll | None = None

    def expects(self, status: int) -> bool:
        """Whether a response with ``status`` is a success."""
        return status in self.expect_status if self.expect_status else 200 <= status < 300
