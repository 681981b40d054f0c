"""Python handlers publish their pydantic input/output models as JSON Schema: ``jetwork handlers
[--schema] [--json]`` and ``jetwork workers --json``, from a real worker's presence entry."""

from __future__ import annotations

import json

from pydantic import BaseModel, Field

from sdk.cli._common import configure_logging
from sdk.worker.config import WorkerConfig
from sdk.worker.core import Worker
from sdk.worker.job_context import JobContext
from tests.eventually import assert_eventually
from tests.integration.test_cli import Cli, cli, ok  # noqa: F401  (fixture)


class ResizeIn(BaseModel):
    url: str
    width: int = Field(ge=1)


class ResizeOut(BaseModel):
    path: str


async def test_handlers_and_their_schemas_are_listed_from_live_workers(
    cli: Cli,  # noqa: F811
) -> None:
    assert "no live worker offers a handler" in ok(await cli("handlers")).stdout
    worker = Worker(WorkerConfig(nats_url=cli.url, labels=frozenset({"img"})))

    @worker.job("resize")
    async def resize(ctx: JobContext, inputs: ResizeIn) -> ResizeOut:
        return ResizeOut(path=inputs.url)

    @worker.job("ping")
    async def ping(ctx: JobContext) -> None:
        return None

    configure_logging()  # the worker's logs to stderr: CliRunner captures stdout process-wide
    await worker.start()
    try:

        async def listed() -> dict[str, dict[str, object]]:
            found: dict[str, dict[str, object]] = json.loads(
                ok(await cli("handlers", "--json")).stdout
            )
            assert set(found) == {"ping", "resize"}, found
            return found

        found = await assert_eventually(listed)
        resize_entry = found["resize"]
        assert resize_entry["workers"] == [worker.worker_id]
        assert resize_entry["input"] == ResizeIn.model_json_schema()
        assert resize_entry["output"] == ResizeOut.model_json_schema()
        assert (found["ping"]["input"], found["ping"]["takes_inputs"]) == (None, False)
        table = ok(await cli("handlers")).stdout
        assert "resize" in table and "ResizeIn" in table and "no inputs" in table
        shown = ok(await cli("handlers", "--schema")).stdout
        assert '"minimum": 1' in shown and '"required": [' in shown
        workers = json.loads(ok(await cli("workers", "--json")).stdout)["workers"]
        assert workers[0]["handler_schemas"]["resize"]["input"]["title"] == "ResizeIn"
    finally:
        await worker.stop()
