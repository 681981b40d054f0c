"""A shell job's outputs: set by ``::set-output`` lines on stdout and by the ``$JETWORK_OUTPUT``
file (``key=value`` lines, ``key<<DELIM`` blocks), never holding more than ``max_output_bytes``."""

from __future__ import annotations

from events.subjects import is_valid_token
from sdk.worker.executors.base import outputs_size


class Outputs:
    """Outputs of one attempt, never holding more than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: dict[str, str] = {}
        self.size = 0
        self.overflow = False
        self.attempted = 0

    def set(self, key: str, value: str, *, extra_bytes: int = 0) -> None:
        old = self.values.pop(key, None)
        if old is not None:
            self.size -= outputs_size({key: old})
        cost = outputs_size({key: value}) + extra_bytes
        if self.overflow or self.size + cost > self.limit:
            self.overflow = True
            self.attempted = max(self.attempted, self.size + cost)
            return
        self.values[key] = value
        self.size += cost


def parse_output_file(text: str) -> list[tuple[str, str]]:
    """``key=value`` lines and ``key<<DELIM`` … ``DELIM`` blocks, in order; ValueError if bad."""
    pairs: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].removesuffix("\r")
        i += 1
        if not line.strip():
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if heredoc >= 0 and (eq < 0 or heredoc < eq):
            key, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not delimiter:
                raise ValueError(f"line {i}: `{key}<<` needs a delimiter, e.g. `{key}<<EOF`")
            body: list[str] = []
            start = i
            while i < len(lines) and lines[i].removesuffix("\r") != delimiter:
                body.append(lines[i].removesuffix("\r"))
                i += 1
            if i >= len(lines):
                raise ValueError(f"line {start}: delimiter {delimiter!r} never closes {key!r}")
            i += 1
            value = "\n".join(body)
        elif eq >= 0:
            key, value = line[:eq], line[eq + 1 :]
        else:
            raise ValueError(f"line {i}: expected `key=value` or `key<<DELIMITER`, got {line!r}")
        if not is_valid_token(key):
            raise ValueError(
                f"line {i}: output name {key!r} is not valid: use 1-128 letters, digits, '_' or '-'"
            )
        pairs.append((key, value))
    return pairs
