"""The dispatch of jobs to workers: the ``JobQueued`` event itself, routed by its label set.

A queued job is appended on ``evt.<p>.<wf>.job.<job>.JobQueued.<token>`` (``events.labels`` for
tokens), and every label set in use is recorded in KV ``jw_labelsets`` under the name of its
durable consumer (``ls-<hash>``: tokens may hold characters that KV keys and consumer names do not
allow). A worker creates that consumer on the events stream, filtered to the label set's
``JobQueued`` subjects, for every label set its capabilities serve: the message it pulls is the
event, so a worker claims without reading the log and no second message is published per job.

A priority other than the default (``events.priority``) is a level of its label set with a
subject token, a consumer (``ls-<hash>-p<N>``) and an entry of its own: ``LabelSet.priority``.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from events import priority, subjects
from events.errors import JetworkError
from events.labels import (
    EMPTY_TOKEN,
    HANDLER_PREFIX,
    SEPARATOR,
    capabilities,
    consumer_name,
    labelset_token,
    parse_token,
    requirement_set,
    serves,
)

__all__ = [
    "EMPTY_TOKEN",
    "HANDLER_PREFIX",
    "SEPARATOR",
    "InvalidDispatch",
    "LabelSet",
    "capabilities",
    "consumer_name",
    "labelset_token",
    "parse_token",
    "requirement_set",
    "serves",
]


class LabelSet(BaseModel):
    """A ``jw_labelsets`` entry (key: the consumer name): a label set, or one of its priority
    levels (``priority``: a level other than the default; None for the default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    requirements: tuple[str, ...]
    priority: int | None = None

    @classmethod
    def of(cls, reqs: Iterable[str], *, level: int | None = None) -> LabelSet:
        members = tuple(sorted(reqs))
        return cls(token=labelset_token(members), requirements=members, priority=level)

    @classmethod
    def of_route(cls, route: str) -> LabelSet:
        """The label set (level) of a ``JobQueued.route``: ``gpu`` or ``gpu.p9``."""
        token, _, level = route.partition(".")
        parsed = priority.parse_token(level) if level else None
        if level and parsed is None:
            raise InvalidDispatch(f"{route!r} names no priority level")
        return cls.of(parse_token(token), level=parsed)

    @property
    def consumer(self) -> str:
        name = consumer_name(self.token)
        return name if self.priority is None else f"{name}-{priority.token(self.priority)}"

    @property
    def subject(self) -> str:
        """The consumer's filter: every ``JobQueued`` of this label set (at this level)."""
        return subjects.queued_for(self.token, self.priority)

    @property
    def route(self) -> str:
        """``gpu`` or, for a priority level, ``gpu.p9`` (as ``JobQueued.route``)."""
        if self.priority is None:
            return self.token
        return f"{self.token}.{priority.token(self.priority)}"

    @property
    def rank(self) -> int:
        """Its priority, for ordering levels highest first (the default's is 5)."""
        return priority.rank(self.priority)

    def encode(self) -> bytes:
        # The default level's entry is written as before priorities existed.
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def decode(cls, data: bytes) -> LabelSet:
        try:
            labelset = cls.model_validate_json(data)
        except ValidationError as exc:
            raise InvalidDispatch(f"not a label set entry: {exc.errors()[0]['msg']}") from None
        if labelset_token(labelset.requirements) != labelset.token:
            raise InvalidDispatch(
                f"label set entry {labelset.token!r} does not match its requirements"
            )
        level = labelset.priority
        if level is not None and (priority.problem(level) or priority.level(level) is None):
            raise InvalidDispatch(
                f"label set entry {labelset.token!r}: {level!r} is no priority level (one of "
                f"{priority.LOWEST}..{priority.HIGHEST} but the default, {priority.DEFAULT})"
            )
        return labelset


class InvalidDispatch(JetworkError):
    """A dispatched message or label set entry is malformed."""
