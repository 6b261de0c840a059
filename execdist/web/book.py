"""``GET /api/v1/orders`` and ``GET /api/v1/positions``: queries across the book (admin and
analyst tokens), and the internal endpoints through which the workers answer each other.

The use case is :class:`execdist.services.book.BookQueries`; these views only read the
parameters and render the answer.
"""

from __future__ import annotations

from collections.abc import Callable

import faust
from aiohttp import web
from faust.web import Request, View

from execdist.auth import Guard
from execdist.domain.access import Action
from execdist.domain.book import (
    BookQuery,
    InvalidBookQuery,
    Listing,
    parse_order_query,
    parse_partitions,
    parse_position_query,
)
from execdist.services.book import INTERNAL_PATHS, BookQueries, BookReader
from execdist.settings import Settings
from execdist.web.auth import access_control, native
from execdist.web.errors import HttpError
from execdist.web.views import api, json_response

Parser = Callable[[dict[str, str]], BookQuery]


def register_book_views(
    app: faust.App, settings: Settings, guard: Guard, book: BookQueries, reader: BookReader
) -> None:
    requires = access_control(guard)

    def parsed(request: Request, parse: Parser) -> BookQuery:
        query = native(request).query
        try:
            return parse({name: query.get(name, "") for name in query})
        except InvalidBookQuery as exc:
            raise HttpError(400, "invalid", exc.message, exc.field) from None

    async def whole_book(request: Request, parse: Parser) -> web.StreamResponse:
        page = await book.ask(parsed(request, parse), request.headers.get("Authorization"))
        return json_response(page.to_dict())

    async def local_part(request: Request, parse: Parser) -> web.StreamResponse:
        query = parsed(request, parse)
        raw = native(request).query.get("partitions", "")
        try:
            partitions = parse_partitions(raw, settings.topic_partitions)
        except InvalidBookQuery as exc:
            raise HttpError(400, "invalid", exc.message, exc.field) from None
        return json_response((await reader.answer(query, partitions)).to_dict())

    @app.page("/api/v1/orders")
    class Orders(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            return await whole_book(request, parse_order_query)

    @app.page("/api/v1/positions")
    class Positions(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            return await whole_book(request, parse_position_query)

    @app.page(INTERNAL_PATHS[Listing.ORDERS])
    class LocalOrders(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            return await local_part(request, parse_order_query)

    @app.page(INTERNAL_PATHS[Listing.POSITIONS])
    class LocalPositions(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            return await local_part(request, parse_position_query)
