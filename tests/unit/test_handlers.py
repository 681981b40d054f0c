from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from events.errors import JetworkError
from sdk.worker.handlers import HandlerRegistry, InvalidHandler, PermanentError
from sdk.worker.job_context import JobContext


class ResizeIn(BaseModel):
    url: str
    width: int


class ResizeOut(BaseModel):
    url: str


def test_decorator_registers_and_returns_the_function_unchanged() -> None:
    registry = HandlerRegistry()

    async def resize(ctx: JobContext, inp: ResizeIn) -> ResizeOut:
        return ResizeOut(url=inp.url)

    assert registry.job("resize")(resize) is resize
    handler = registry.get("resize")
    assert handler is not None
    assert (handler.input_model, handler.output_model) == (ResizeIn, ResizeOut)
    assert handler.is_async and handler.takes_inputs
    assert "resize" in registry
    assert registry.names == ("resize",)
    assert len(registry) == 1


def test_models_can_be_given_explicitly() -> None:
    registry = HandlerRegistry()

    @registry.job("resize", input_model=ResizeIn, output_model=ResizeOut)
    def resize(ctx, inp):  # type: ignore[no-untyped-def]
        return {"url": inp.url}

    handler = registry.get("resize")
    assert handler is not None
    assert (handler.input_model, handler.output_model) == (ResizeIn, ResizeOut)
    assert not handler.is_async


def test_optional_output_model_is_inferred() -> None:
    registry = HandlerRegistry()

    @registry.job("maybe")
    async def maybe(ctx: JobContext, inp: ResizeIn) -> ResizeOut | None:
        return None

    handler = registry.get("maybe")
    assert handler is not None and handler.output_model is ResizeOut


@pytest.mark.parametrize("hint", [dict[str, Any], dict, Any])
def test_raw_mapping_inputs_need_no_model(hint: object) -> None:
    registry = HandlerRegistry()

    def handler(ctx: JobContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs

    handler.__annotations__["inputs"] = hint
    registry.register("raw", handler)
    registered = registry.get("raw")
    assert registered is not None and registered.input_model is None
    assert registered.parse_inputs({"a": 1}) == {"a": 1}


def test_context_only_handler_rejects_inputs() -> None:
    registry = HandlerRegistry()

    @registry.job("ping")
    async def ping(ctx: JobContext) -> None:
        return None

    handler = registry.get("ping")
    assert handler is not None and not handler.takes_inputs
    assert handler.parse_inputs({}) is None
    with pytest.raises(ValueError, match="takes no inputs, but the job passes a"):
        handler.parse_inputs({"a": 1})


def test_include_merges_registries() -> None:
    a, b = HandlerRegistry(), HandlerRegistry()
    a.register("one", lambda ctx: None)
    b.register("two", lambda ctx: None)
    a.include(b)
    assert a.names == ("one", "two")
    with pytest.raises(InvalidHandler, match="registered twice: two"):
        a.include(b)


def test_callable_objects_are_handlers() -> None:
    class Thumbnail:
        async def __call__(self, ctx: JobContext, inp: ResizeIn) -> ResizeOut:
            return ResizeOut(url=inp.url)

    handler = HandlerRegistry().register("thumb", Thumbnail())
    assert handler.is_async and handler.input_model is ResizeIn


# --- mistakes caught when the decorator is applied ----------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "a.b", "x" * 129, "wild*"])
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidHandler, match="is not valid: use 1-128 letters"):
        HandlerRegistry().job(name)


def test_bare_decorator_is_explained() -> None:
    registry = HandlerRegistry()

    async def resize(ctx: JobContext) -> None:
        return None

    with pytest.raises(InvalidHandler, match=r'write @job\("resize"\) rather than @job'):
        registry.job(resize)  # type: ignore[arg-type]


def test_duplicate_names_are_rejected() -> None:
    registry = HandlerRegistry()
    registry.register("dup", lambda ctx: None)
    with pytest.raises(InvalidHandler, match="'dup' is already registered"):
        registry.register("dup", lambda ctx: None)


def test_handler_without_parameters_is_rejected() -> None:
    with pytest.raises(InvalidHandler, match="takes no parameters; a handler receives the job"):
        HandlerRegistry().register("bad", lambda: None)


def test_handler_with_extra_required_parameters_is_rejected() -> None:
    def bad(ctx: JobContext, inp: ResizeIn, other: int) -> None: ...

    with pytest.raises(InvalidHandler, match="requires more than \\(ctx, inputs\\): also other"):
        HandlerRegistry().register("bad", bad)


def test_required_keyword_only_parameter_is_rejected() -> None:
    def bad(ctx: JobContext, *, flag: bool) -> None: ...

    with pytest.raises(InvalidHandler, match="required keyword-only parameter 'flag'"):
        HandlerRegistry().register("bad", bad)


def test_non_model_input_annotation_is_rejected() -> None:
    def bad(ctx: JobContext, count: int) -> None: ...

    with pytest.raises(InvalidHandler, match="annotated as <class 'int'>; annotate it with a"):
        HandlerRegistry().register("bad", bad)


def test_explicit_model_must_be_a_pydantic_model() -> None:
    with pytest.raises(InvalidHandler, match="input_model must be a pydantic BaseModel"):
        HandlerRegistry().job("bad", input_model=dict)(lambda ctx, inp: None)  # type: ignore[arg-type]


def test_input_model_for_a_context_only_handler_is_rejected() -> None:
    with pytest.raises(InvalidHandler, match="takes only the job context"):
        HandlerRegistry().register("bad", lambda ctx: None, input_model=ResizeIn)


def test_unresolvable_hints_are_explained() -> None:
    def bad(ctx: JobContext, inp: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(InvalidHandler, match="type hints cannot be resolved"):
        HandlerRegistry().register("bad", bad)


def test_generators_are_rejected() -> None:
    async def gen(ctx: JobContext) -> Any:
        yield 1

    with pytest.raises(InvalidHandler, match="is a generator"):
        HandlerRegistry().register("gen", gen)


def test_permanent_error_is_a_non_retryable_jetwork_error() -> None:
    err = PermanentError("image is corrupt")
    assert isinstance(err, JetworkError)
    assert err.retryable is False
    assert str(err) == "image is corrupt"
