"""The builder's http step (``Workflow.job(name, http=Http(...))``), as in YAML's ``http:``.

Example::

    wf = Workflow("orders", inputs={"order": "o-1"})
    create = wf.job("create", http=Http(
        url="https://api.example.com/orders", method="POST",
        headers={"Authorization": "Bearer ${{ secrets.API_TOKEN }}"},
        body={"id": wf.input("order")}, expect_status=[200, 201]))
    wf.job("wait", needs=[create], http=Http(
        url="https://api.example.com/orders/${{ fromJSON(needs.create.outputs.body).id }}",
        poll=Poll(interval="5s", until="${{ fromJSON(response.body).state == 'done' }}")))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Http", "Poll"]

Duration = str | float | timedelta


def _duration(value: Duration) -> str | float:
    return value.total_seconds() if isinstance(value, timedelta) else value


class Poll(BaseModel):
    """Repeat the request every ``interval`` until ``until`` (over ``response``) holds."""

    model_config = ConfigDict(frozen=True)

    interval: Duration
    until: str
    max_polls: int | None = None

    def to_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"interval": _duration(self.interval), "until": self.until}
        if self.max_polls is not None:
            raw["max_polls"] = self.max_polls
        return raw


class Http(BaseModel):
    """An http step: the request jetwork server makes (docs/workflows.md, "HTTP steps")."""

    model_config = ConfigDict(frozen=True)

    url: str
    method: str | None = None
    headers: Mapping[str, str] | None = None
    body: Any = None
    timeout: Duration | None = None
    expect_status: Iterable[int] | int | None = None
    poll: Poll | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``http:`` mapping of a definition file (only what was set)."""
        raw: dict[str, Any] = {"url": self.url}
        if self.method is not None:
            raw["method"] = self.method
        if self.headers is not None:
            raw["headers"] = dict(self.headers)
        if self.body is not None:
            body = self.body
            raw["body"] = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        if self.timeout is not None:
            raw["timeout"] = _duration(self.timeout)
        if self.expect_status is not None:
            statuses = self.expect_status
            raw["expect_status"] = [statuses] if isinstance(statuses, int) else list(statuses)
        if self.poll is not None:
            raw["poll"] = self.poll.to_dict()
        return raw
