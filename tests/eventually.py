"""``assert_eventually``: poll a condition instead of sleeping a guessed amount of time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def assert_eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...
@overload
async def assert_eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...
async def assert_eventually(
    probe: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition never became true",
) -> Any:
    """Call ``probe`` until it returns a truthy value (returned) or raises no AssertionError.

    ``probe`` may be sync or async. On timeout the last AssertionError (or ``message``) is raised.
    """
    deadline = time.monotonic() + timeout
    last_error: AssertionError | None = None
    while True:
        try:
            result = probe()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            if last_error is not None:
                raise AssertionError(f"{message} within {timeout}s: {last_error}") from last_error
            raise AssertionError(f"{message} within {timeout}s")
        await asyncio.sleep(interval)
