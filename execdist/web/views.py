"""HTTP views of a worker: health, metrics and the analysts' state queries.

Queries about an order or an account are answered by the worker that holds the key's partition;
any other worker forwards the request there (``app.table_route``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiohttp import web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from execdist.domain import OrderState, order_view
from execdist.domain.positions import position_view
from execdist.services.subscription_store import NotLoaded
from execdist.web.auth import bearer_token, require_admin
from execdist.web.errors import HttpError, error_response

if TYPE_CHECKING:
    from execdist.app import Components

Handler = Callable[..., Awaitable[Any]]


def api(handler: Handler) -> Handler:
    """Render :class:`HttpError` as the contract's error object."""

    @functools.wraps(handler)
    async def wrapper(self: View, request: Request, *args: Any, **kwargs: Any) -> Any:
        try:
            _reject_undecodable_token(request)
            return await handler(self, request, *args, **kwargs)
        except HttpError as exc:
            return exc.response()
        except NotLoaded as exc:
            return error_response(503, "starting", str(exc))

    return wrapper


def _reject_undecodable_token(request: Request) -> None:
    """401 for a token that is not UTF-8 text.

    aiohttp turns header bytes that are not UTF-8 into lone surrogates; such a token can match
    no token, and the constant-time comparison cannot encode it (it raised, answering 500).
    """
    token = bearer_token(request)
    if token is None:
        return
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        raise HttpError(401, "unauthorized", "the token is not valid") from None


@web.middleware
async def json_routing_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answer with the contract's error object, not aiohttp's text."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return error_response(404, "not_found", "no such resource")
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(
            405, "method_not_allowed", f"{request.method} is not allowed here"
        )
        response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    return response


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def register_views(app: faust.App, components: Components) -> None:
    settings = components.settings
    states_table = components.states.table
    positions_table = components.positions.table
    web_app = getattr(app.web, "web_app", None)
    if isinstance(web_app, web.Application):
        web_app.middlewares.append(json_routing_errors)

    @app.page("/health/live")
    class Live(View):
        async def get(self, request: Request) -> Response:
            return json_response({"status": "live", "worker": settings.worker_id})

    @app.page("/health/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            if components.ready.ready:
                return json_response({"status": "ready", "worker": settings.worker_id})
            return error_response(
                503,
                "not_ready",
                "partitions are not assigned or tables are still recovering; retry shortly",
            )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            components.metrics.assigned_partitions.set(
                len([tp for tp in app.assignor.assigned_actives() if tp.topic == "orders"])
            )
            return web.Response(
                body=generate_latest(components.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

    def load_state(order_id: str) -> OrderState:
        raw = components.states.lookup(order_id.encode())
        if raw is None:
            raise HttpError(404, "not_found", f"no order {order_id!r} is known (or it expired)")
        return OrderState.from_dict(orjson.loads(raw))

    @app.page("/api/v1/orders/{order_id}")
    class OrderQuery(View):
        @api
        @app.table_route(table=states_table, match_info="order_id")
        async def get(self, request: Request, order_id: str) -> Response:
            require_admin(request, settings.admin_token, components.subscriptions.scope_of)
            return json_response(order_view(load_state(order_id)))

    @app.page("/api/v1/orders/{order_id}/confirmations")
    class OrderConfirmations(View):
        @api
        @app.table_route(table=states_table, match_info="order_id")
        async def get(self, request: Request, order_id: str) -> Response:
            require_admin(request, settings.admin_token, components.subscriptions.scope_of)
            state = load_state(order_id)
            items = sorted(
                (confirmation.to_dict() for confirmation in state.confirmations),
                key=lambda item: int(str(item["seq"])),
            )
            return json_response({"order_id": order_id, "items": items})

    @app.page("/api/v1/positions/{account}")
    class Positions(View):
        @api
        @app.table_route(table=positions_table, match_info="account")
        async def get(self, request: Request, account: str) -> Response:
            require_admin(request, settings.admin_token, components.subscriptions.scope_of)
            raw = components.positions.lookup(account.encode())
            if raw is None:
                raise HttpError(
                    404, "not_found", f"no executions are known for account {account!r}"
                )
            return json_response(position_view(account, orjson.loads(raw)))
