"""The dispatch of jobs to workers: the ``JobQueued`` event itself, routed by its label set.

A queued job is appended on ``evt.<p>.<wf>.job.<job>.JobQueued.<token>`` (``events.labels`` for
tokens), and every label set in use is recorded in KV ``jw_labelsets`` under the name of its
durable consumer (``ls-<hash>``: tokens may hold characters that KV keys and consumer names do not
allow). A worker creates that consumer on the events stream, filtered to the label set's
``JobQueued`` subjects, for every label set its capabilities serve: the message it pulls is the
event, so a worker claims without reading the log and no second message is published per job.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from events import subjects
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
    """A ``jw_labelsets`` entry (key: the consumer name)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    requirements: tuple[str, ...]

    @classmethod
    def of(cls, reqs: Iterable[str]) -> LabelSet:
        members = tuple(sorted(reqs))
        return cls(token=labelset_token(members), requirements=members)

    @property
    def consumer(self) -> str:
        return consumer_name(self.token)

    @property
    def subject(self) -> str:
        """The consumer's filter: every ``JobQueued`` of this label set."""
        return subjects.queued_for(self.token)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

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
        return labelset


class InvalidDispatch(JetworkError):
    """A dispatched message or label set entry is malformed."""
