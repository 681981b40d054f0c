"""The web UI: built assets shipped in the package (``gateway/static/``, made by ``make ui`` from
``ui/``), served on the gateway's port. Every page is the same ``index.html``; the page reads the
client API and its SSE streams like any other client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC: Final = Path(__file__).parent / "static"
PAGES: Final = (
    "/",
    "/workflows/{workflow_id}",
    "/workflows/{workflow_id}/jobs/{job}",
    "/workers",
    "/dead-letters",
    "/start",
)
_PAGE_HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:; frame-ancestors 'none'",
}
_MISSING: Final = (
    "<!doctype html><meta charset='utf-8'><title>jetwork</title>"
    "<p>The web UI's assets are not in this installation (<code>gateway/static/</code>). "
    "From a checkout: <code>make ui</code>. The API is at <a href='/docs'>/docs</a>.</p>"
)


class _Assets(StaticFiles):
    """Hashed file names: cached for good."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def ui_routes(static: Path = STATIC) -> list[BaseRoute]:
    index = static / "index.html"
    page = index.read_text(encoding="utf-8") if index.is_file() else None

    async def serve_page(_: Request) -> Response:
        if page is None:
            return HTMLResponse(_MISSING, status_code=503, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    routes: list[BaseRoute] = [
        Route(path, serve_page, methods=["GET"], include_in_schema=False) for path in PAGES
    ]
    assets = static / "assets"
    if assets.is_dir():
        files = GZipMiddleware(_Assets(directory=assets), minimum_size=1024)
        routes.append(Mount("/ui/assets", app=files, name="ui_assets"))
    return routes
