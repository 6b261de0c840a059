"""``GET /``: the live blotter page for traders, fed by the WebSocket relay."""

from __future__ import annotations

from pathlib import Path

import faust
from aiohttp import web
from faust.web import Request, View

STATIC = Path(__file__).parent / "static"


def register_blotter(app: faust.App) -> None:
    page = (STATIC / "blotter.html").read_bytes()

    @app.page("/")
    class Blotter(View):
        async def get(self, request: Request) -> web.Response:
            return web.Response(
                body=page,
                content_type="text/html",
                charset="utf-8",
                headers={"Cache-Control": "no-cache"},
            )

    for name in ("blotter.js", "blotter.css"):
        if (STATIC / name).exists():
            asset = (STATIC / name).read_bytes()
            kind = "application/javascript" if name.endswith(".js") else "text/css"

            def make(body: bytes, content_type: str) -> type[View]:
                class Asset(View):
                    async def get(self, request: Request) -> web.Response:
                        return web.Response(body=body, content_type=content_type)

                return Asset

            app.page(f"/static/{name}")(make(asset, kind))
