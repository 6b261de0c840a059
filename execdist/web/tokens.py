"""``/api/v1/tokens``: issue, list and revoke admin and analyst tokens (admin only)."""

from __future__ import annotations

import faust
from aiohttp import web
from faust.web import Request, View

from execdist.auth import Guard
from execdist.auth.tokens import issue_token, revoke_token
from execdist.domain.access import Action, InvalidTokenRequest, parse_token_request
from execdist.services.subscription_store import SubscriptionStore
from execdist.web.auth import access_control
from execdist.web.errors import HttpError
from execdist.web.subscriptions import encode_cursor, page_cursor, page_limit, read_json
from execdist.web.views import api, json_response


def register_token_views(app: faust.App, guard: Guard, store: SubscriptionStore) -> None:
    requires = access_control(guard)

    @app.page("/api/v1/tokens")
    class Tokens(View):
        @api
        @requires(Action.MANAGE)
        async def post(self, request: Request) -> web.StreamResponse:
            try:
                token_request = parse_token_request(await read_json(request))
            except InvalidTokenRequest as exc:
                raise HttpError(400, "invalid", exc.message, exc.field) from None
            issued = await issue_token(store, token_request)
            return json_response(issued.to_dict(), status=201)

        @api
        @requires(Action.MANAGE)
        async def get(self, request: Request) -> web.StreamResponse:
            limit = page_limit(request.query.get("limit"))
            after = page_cursor(request.query.get("cursor"))
            items = [t for t in store.api_tokens() if after is None or t.id > after]
            page = items[:limit]
            next_cursor = encode_cursor(page[-1].id) if len(items) > limit else None
            return json_response({"items": [t.to_dict() for t in page], "next_cursor": next_cursor})

    @app.page("/api/v1/tokens/{token_id}")
    class OneToken(View):
        @api
        @requires(Action.MANAGE)
        async def delete(self, request: Request, token_id: str) -> web.StreamResponse:
            if not await revoke_token(store, token_id):
                raise HttpError(404, "not_found", f"no token {token_id!r}")
            return web.Response(status=204)
