"""The API description (``GET /api/v1/openapi.json``) and the page that shows it (``GET /docs``).

Both are static files shipped in the package, read once when the views are registered so a
request never touches the disk. The page renders the description in the browser with no
external script or stylesheet: workers often run on networks without internet access.
"""

from __future__ import annotations

from pathlib import Path

import faust
from aiohttp import web
from faust.web import Request, View

__all__ = ["DOCS_PAGE", "OPENAPI_DOCUMENT", "register_docs"]

_HERE = Path(__file__).resolve().parent
OPENAPI_DOCUMENT = _HERE / "openapi.json"
DOCS_PAGE = _HERE / "static" / "docs.html"

# The page only talks to this worker; the policy keeps it that way even if the description
# ever carried hostile text that slipped past the page's escaping.
_DOCS_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def register_docs(app: faust.App) -> None:
    """Add ``GET /api/v1/openapi.json`` and ``GET /docs`` to the app's web server."""
    openapi = OPENAPI_DOCUMENT.read_bytes()
    page = DOCS_PAGE.read_bytes()

    @app.page("/api/v1/openapi.json")
    class OpenApiDocument(View):
        async def get(self, request: Request) -> web.Response:
            return web.Response(
                body=openapi,
                content_type="application/json",
                headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
            )

    @app.page("/docs")
    class DocsPage(View):
        async def get(self, request: Request) -> web.Response:
            return web.Response(
                body=page, content_type="text/html", charset="utf-8", headers=_DOCS_HEADERS
            )
