"""The web UI's serving (gateway/ui.py) and its committed build: every page path answers the
same index.html, the assets it names are in the package, and a missing build says what to do."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from starlette.applications import Starlette

from gateway.ui import PAGES, STATIC, ui_routes


def client(static: Path) -> httpx.AsyncClient:
    app = Starlette(routes=ui_routes(static))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ui")


async def test_every_page_path_answers_the_index_with_its_headers() -> None:
    http = client(STATIC)
    index = (STATIC / "index.html").read_text()
    for path in ["/", "/workflows/wf-1", "/workflows/wf-1/jobs/build", "/workers",
                 "/dead-letters", "/start"]:  # fmt: skip
        answer = await http.get(path)
        assert answer.status_code == 200, path
        assert answer.text == index
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-cache"
    assert len(PAGES) == 6
    assert (await http.get("/nope")).status_code == 404


async def test_the_committed_build_has_every_asset_its_index_names() -> None:
    index = (STATIC / "index.html").read_text()
    named = re.findall(r'(?:src|href)="/ui/assets/([^"]+)"', index)
    assert any(name.endswith(".js") for name in named)
    assert any(name.endswith(".css") for name in named)
    http = client(STATIC)
    for name in named:
        assert (STATIC / "assets" / name).is_file(), f"{name}: run `make ui` and commit"
        answer = await http.get(f"/ui/assets/{name}", headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == 200
        assert "immutable" in answer.headers["cache-control"]
    script = next(n for n in named if n.endswith(".js"))
    bundle = (STATIC / "assets" / script).read_text()
    workers = re.findall(r"elk-worker\.min-[\w-]+\.js", bundle)
    assert workers and all((STATIC / "assets" / w).is_file() for w in workers)


async def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    answer = await client(tmp_path).get("/")
    assert answer.status_code == 503
    assert "make ui" in answer.text
