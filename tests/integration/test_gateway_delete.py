"""``DELETE /api/workflows/{id}`` and the list filters over real HTTP."""

from __future__ import annotations

import httpx
from nats.aio.client import Client as NATS

from tests.eventually import assert_eventually
from tests.gateway_harness import start
from tests.integration.test_gateway_api import HELLO, http, run_to_end  # noqa: F401  (fixture)


async def test_delete_refuses_an_open_workflow_and_deletes_an_ended_one(
    http: httpx.AsyncClient,  # noqa: F811
    clean_nats: NATS,
) -> None:
    wf = await start(http, HELLO)

    async def refused() -> bool:  # once the engine has started it (404 before)
        answer = await http.delete(f"/api/workflows/{wf}")
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "refused"
        assert "it is running; only an ended workflow" in answer.json()["error"]
        return True

    await assert_eventually(refused, timeout=15)
    await run_to_end(http, clean_nats, wf)

    async def listed() -> bool:
        page = await http.get("/api/workflows", params={"since": "1h", "label": "http"})
        assert [row["workflow_id"] for row in page.json()["workflows"]] == [wf], page.text
        return True

    await assert_eventually(listed, timeout=15)
    bad = await http.get("/api/workflows", params={"until": "soon"})
    assert bad.status_code == 422 and "until" in bad.json()["error"]

    deleted = await http.delete(f"/api/workflows/{wf}", params={"reason": "test"})
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["deleted"], deleted.json()["by"]) == (True, "http")
    assert (await http.get(f"/api/workflows/{wf}")).status_code == 404
    assert (await http.delete("/api/workflows/wf-nope")).status_code == 404
