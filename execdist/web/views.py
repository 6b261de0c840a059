"""HTTP views of a worker: health, metrics and the analysts' state queries.

Queries about an order or an account are answered by the worker that owns the key's partition;
any other worker forwards the request there (:func:`owner_routed`), finding the owner in the
workers' reports.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
import orjson
from aiohttp import web
from faust.web import Request, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from execdist.domain import OrderState, order_view
from execdist.domain.access import Action
from execdist.domain.positions import position_view
from execdist.services.subscription_store import NotLoaded
from execdist.tables.declarations import history_prefix
from execdist.topics import key_partition
from execdist.web.auth import Handler, access_control, native
from execdist.web.errors import HttpError, error_response

if TYPE_CHECKING:
    from execdist.app import Components


def api(handler: Handler) -> Handler:
    """Render :class:`HttpError` as the contract's error object."""

    @functools.wraps(handler)
    async def wrapper(self: View, request: Request, *args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(self, request, *args, **kwargs)
        except HttpError as exc:
            return exc.response()
        except NotLoaded as exc:
            return error_response(503, "starting", str(exc))

    return wrapper


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


FORWARDED_HEADER = "X-Execdist-Forwarded-By"


def owner_routed(components: Components) -> Callable[[str], Callable[[Handler], Handler]]:
    """Answer here when this worker owns the key's partition, else forward to its owner."""
    settings = components.settings

    def decorator_for(match_info: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def routed(self: View, request: Request, **kwargs: Any) -> Any:
                key = request.match_info[match_info]
                partition = key_partition(key.encode(), settings.topic_partitions)
                if partition in components.pipeline.partitions:
                    return await handler(self, request, **kwargs)
                owner = _owner_of(components, partition)
                if owner is None or request.headers.get(FORWARDED_HEADER):
                    raise HttpError(
                        503,
                        "not_ready",
                        f"partition {partition} holding {key!r} has no ready owner at the "
                        "moment (partitions are moving between workers); retry shortly",
                    )
                return await _forward(request, owner, settings.worker_id)

            return routed

        return decorator

    return decorator_for


def _owner_of(components: Components, partition: int) -> str | None:
    return components.reports.owner_url(partition)


async def _forward(request: Request, owner: str, worker_id: str) -> web.Response:
    headers = {FORWARDED_HEADER: worker_id}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    url = owner.rstrip("/") + native(request).path_qs
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as answer,
        ):
            body = await answer.read()
            return web.Response(
                body=body,
                status=answer.status,
                content_type=answer.content_type or "application/json",
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HttpError(
            503, "not_ready", f"the worker owning this key did not answer ({exc!r}); retry shortly"
        ) from exc


def json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def register_views(app: faust.App, components: Components) -> None:
    settings = components.settings
    owned = owner_routed(components)
    requires = access_control(components.guard)
    web_app = getattr(app.web, "web_app", None)
    if isinstance(web_app, web.Application):
        web_app.middlewares.append(json_routing_errors)

    @app.page("/health/live")
    class Live(View):
        async def get(self, request: Request) -> web.StreamResponse:
            return json_response({"status": "live", "worker": settings.worker_id})

    @app.page("/health/ready")
    class Ready(View):
        async def get(self, request: Request) -> web.StreamResponse:
            if components.ready.ready:
                return json_response({"status": "ready", "worker": settings.worker_id})
            return error_response(
                503,
                "not_ready",
                "partitions are not assigned or tables are still recovering; retry shortly",
            )

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> web.StreamResponse:
            return web.Response(
                body=generate_latest(components.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

    def stored_state(order_id: str) -> bytes:
        raw = components.states.lookup(order_id.encode())
        if raw is None:
            raise HttpError(404, "not_found", f"no order {order_id!r} is known (or it expired)")
        return raw

    @app.page("/api/v1/orders/{order_id}")
    class OrderQuery(View):
        @api
        @requires(Action.READ)
        @owned("order_id")
        async def get(self, request: Request, order_id: str) -> web.StreamResponse:
            state = OrderState.from_dict(orjson.loads(stored_state(order_id)))
            return json_response(order_view(state))

    @app.page("/api/v1/orders/{order_id}/confirmations")
    class OrderConfirmations(View):
        @api
        @requires(Action.READ)
        @owned("order_id")
        async def get(self, request: Request, order_id: str) -> web.StreamResponse:
            stored_state(order_id)  # 404 for an order not known
            # stored as published, under keys in seq order
            items = [
                orjson.loads(value)
                for value in components.history.lookup_prefix(history_prefix(order_id))
            ]
            return json_response({"order_id": order_id, "items": items})

    @app.page("/api/v1/positions/{account}")
    class Positions(View):
        @api
        @requires(Action.READ)
        @owned("account")
        async def get(self, request: Request, account: str) -> web.StreamResponse:
            raw = components.positions.lookup(account.encode())
            if raw is None:
                raise HttpError(
                    404, "not_found", f"no executions are known for account {account!r}"
                )
            return json_response(position_view(account, orjson.loads(raw)))
