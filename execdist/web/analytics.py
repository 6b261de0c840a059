"""``GET /api/v1/analytics``: figures per symbol, venue, account or subscription over a window,
gathered from every worker (:mod:`execdist.services.analytics`); admins and analysts."""

from __future__ import annotations

import faust
from aiohttp import web
from faust.web import Request, View

from execdist.auth import Guard
from execdist.domain.access import Action
from execdist.domain.analytics import Dimension, Window
from execdist.services.analytics import INTERNAL_PATH, Analytics, AnalyticsQueries
from execdist.web.auth import access_control, native
from execdist.web.errors import HttpError
from execdist.web.views import api, json_response


def parse_analytics(query: dict[str, str]) -> tuple[Dimension, Window]:
    """``by`` (symbol, venue, account, subscription; symbol by default) and ``window`` (1m,
    1h, 1d; 1h by default)."""
    by = query.get("by", Dimension.SYMBOL.value)
    window = query.get("window", Window.HOUR.value)
    if by not in Dimension.__members__.values():
        raise HttpError(
            400, "invalid", f"by must be one of {', '.join(Dimension)}, got {by!r}", "by"
        )
    if window not in Window.__members__.values():
        raise HttpError(
            400, "invalid", f"window must be one of {', '.join(Window)}, got {window!r}", "window"
        )
    return Dimension(by), Window(window)


def register_analytics_views(
    app: faust.App, guard: Guard, queries: AnalyticsQueries, analytics: Analytics
) -> None:
    requires = access_control(guard)

    def params(request: Request) -> tuple[Dimension, Window]:
        query = native(request).query
        return parse_analytics({name: query.get(name, "") for name in query})

    @app.page("/api/v1/analytics")
    class AnalyticsView(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            by, window = params(request)
            answer = await queries.ask(by, window, request.headers.get("Authorization"))
            return json_response(answer)

    @app.page(INTERNAL_PATH)
    class LocalAnalytics(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            by, window = params(request)
            figures = analytics.local(by, window)
            return json_response({"items": {key: f.to_dict() for key, f in figures.items()}})
