"""Python job handlers: a registry, the ``@job`` decorator that fills it, and ``PermanentError``.

A handler is ``async def name(ctx, inputs: InModel) -> OutModel | dict | None`` (a plain ``def``
runs in a thread). A workflow job names it with ``uses: name`` and passes ``with: {...}``, which
are validated against the input model before the handler runs::

    registry = HandlerRegistry()

    @registry.job("resize")
    async def resize(ctx: JobContext, inp: ResizeIn) -> ResizeOut: ...

Models are inferred from the type hints unless given; everything is checked when the decorator is
applied, so a mistake fails at import time rather than on the first job.
"""

from __future__ import annotations

import asyncio
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from events.errors import JetworkError
from events.subjects import is_valid_token
from sdk.worker.job_context import JobContext

F = TypeVar("F", bound=Callable[..., Any])

_RAW_INPUT_HINTS: tuple[object, ...] = (
    inspect.Parameter.empty,
    Any,
    dict,
    Mapping,
    typing.Mapping,  # the typing aliases are distinct objects users may still write
    typing.Dict,  # noqa: UP006
)


class PermanentError(JetworkError):
    """Raise from a handler to fail the job at once, without retries (bad input, missing data)."""

    retryable = False


class InvalidHandler(JetworkError, TypeError):
    """A handler cannot be registered as written; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler and what was learnt about it when it was registered."""

    name: str
    fn: Callable[..., Any]
    input_model: type[BaseModel] | None
    output_model: type[BaseModel] | None
    is_async: bool
    takes_inputs: bool

    def parse_inputs(self, raw: Mapping[str, Any]) -> Any:
        """``raw`` (the job's ``with``) as the handler expects it.

        Raises pydantic's ``ValidationError`` or ``ValueError`` for inputs the handler cannot take.
        """
        if not self.takes_inputs:
            if raw:
                raise ValueError(
                    f"handler {self.name!r} takes no inputs, but the job passes "
                    f"{', '.join(sorted(raw))}"
                )
            return None
        if self.input_model is None:
            return dict(raw)
        return self.input_model.model_validate(dict(raw))

    async def invoke(self, ctx: JobContext, inputs: Any) -> Any:
        """Call the handler: awaited on the loop, or in a worker thread when it is sync."""
        args = (ctx, inputs) if self.takes_inputs else (ctx,)
        if self.is_async:
            return await self.fn(*args)
        result = await asyncio.to_thread(self.fn, *args)
        if inspect.isawaitable(result):
            result = await result
        return result


class HandlerRegistry:
    """Handlers by name. Embed one in a worker; merge others into it with ``include``."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def job(
        self,
        name: str,
        *,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> Callable[[F], F]:
        """Decorator registering the function as handler ``name``; the function is unchanged."""
        if callable(name) and not isinstance(name, str):
            raise InvalidHandler(
                '@job needs the handler\'s name: write @job("resize") rather than @job'
            )
        _check_name(name)

        def decorate(fn: F) -> F:
            self.register(name, fn, input_model=input_model, output_model=output_model)
            return fn

        return decorate

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> Handler:
        """Register ``fn`` as handler ``name`` (what ``@job`` does) and return its description."""
        _check_name(name)
        if name in self._handlers:
            existing = self._handlers[name].fn
            raise InvalidHandler(
                f"handler {name!r} is already registered (by {_describe(existing)}); "
                "handler names must be unique per worker"
            )
        handler = build_handler(name, fn, input_model=input_model, output_model=output_model)
        self._handlers[name] = handler
        return handler

    def include(self, other: HandlerRegistry) -> None:
        """Add every handler of ``other``; a name registered in both is an error."""
        clash = sorted(set(self._handlers) & set(other._handlers))
        if clash:
            raise InvalidHandler(f"handler name(s) registered twice: {', '.join(clash)}")
        self._handlers.update(other._handlers)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Registered handler names, sorted (what the worker announces and routes on)."""
        return tuple(sorted(self._handlers))

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[Handler]:
        return iter([self._handlers[name] for name in self.names])

    def __len__(self) -> int:
        return len(self._handlers)

    def __repr__(self) -> str:
        return f"HandlerRegistry({', '.join(self.names)})"


def build_handler(
    name: str,
    fn: Callable[..., Any],
    *,
    input_model: type[BaseModel] | None = None,
    output_model: type[BaseModel] | None = None,
) -> Handler:
    """Inspect ``fn`` and describe it as a ``Handler``, or raise ``InvalidHandler`` saying why."""
    _check_name(name)
    where = f"handler {name!r} ({_describe(fn)})"
    if not callable(fn):
        raise InvalidHandler(f"{where} is not callable")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise InvalidHandler(f"{where} is a generator; a handler returns its result once")
    for label, model in (("input_model", input_model), ("output_model", output_model)):
        if model is not None and not _is_model(model):
            raise InvalidHandler(
                f"{where}: {label} must be a pydantic BaseModel subclass, got {model!r}"
            )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise InvalidHandler(f"{where}: cannot read its signature ({exc})") from None
    inputs_param = _inputs_parameter(where, signature)
    takes_inputs = inputs_param is not None
    hints = _type_hints(where, fn)
    if not takes_inputs and input_model is not None:
        raise InvalidHandler(
            f"{where} takes only the job context, but input_model={input_model.__name__} was "
            "given: add an inputs parameter, e.g. `async def handler(ctx, inputs: Model)`"
        )
    if takes_inputs and input_model is None and inputs_param is not None:
        input_model = _input_model_from_hint(where, inputs_param, hints.get(inputs_param.name))
    if output_model is None:
        output_model = _output_model_from_hint(hints.get("return"))
    return Handler(
        name=name,
        fn=fn,
        input_model=input_model,
        output_model=output_model,
        is_async=_is_async(fn),
        takes_inputs=takes_inputs,
    )


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not is_valid_token(name):
        raise InvalidHandler(
            f"handler name {name!r} is not valid: use 1-128 letters, digits, '_' or '-' "
            "(it is used as a routing token)"
        )


def _inputs_parameter(where: str, signature: inspect.Signature) -> inspect.Parameter | None:
    positional: list[inspect.Parameter] = []
    var_positional = False
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            positional.append(param)
        elif param.kind is param.VAR_POSITIONAL:
            var_positional = True
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            raise InvalidHandler(
                f"{where} has a required keyword-only parameter {param.name!r}; a handler is "
                "called as handler(ctx) or handler(ctx, inputs): give it a default"
            )
    if not positional and not var_positional:
        raise InvalidHandler(
            f"{where} takes no parameters; a handler receives the job context first: "
            "`async def handler(ctx: JobContext, inputs: Model)`"
        )
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 2:
        extra = ", ".join(p.name for p in required[2:])
        raise InvalidHandler(
            f"{where} requires more than (ctx, inputs): also {extra}; put every input in the "
            "inputs model instead"
        )
    if len(positional) >= 2:
        return positional[1]
    if var_positional:
        return inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_ONLY)
    return None


def _type_hints(where: str, fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
    try:
        return typing.get_type_hints(target)
    except Exception as exc:
        raise InvalidHandler(
            f"{where}: its type hints cannot be resolved ({exc}); import the names they use "
            "at module level, or pass input_model= / output_model= explicitly"
        ) from None


def _input_model_from_hint(
    where: str, param: inspect.Parameter, hint: object
) -> type[BaseModel] | None:
    if hint is None:
        hint = param.annotation
    if _is_model(hint):
        return hint  # type: ignore[return-value]
    if hint in _RAW_INPUT_HINTS or typing.get_origin(hint) in (dict, Mapping):
        return None
    raise InvalidHandler(
        f"{where}: parameter {param.name!r} is annotated as {hint!r}; annotate it with a "
        "pydantic model (or dict[str, Any] for unvalidated inputs), or pass input_model="
    )


def _output_model_from_hint(hint: object) -> type[BaseModel] | None:
    if _is_model(hint):
        return hint  # type: ignore[return-value]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        models = [arg for arg in typing.get_args(hint) if _is_model(arg)]
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(models) == 1 and len(others) == 1:
            return models[0]  # type: ignore[no-any-return]
    return None


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def _describe(fn: object) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}"
