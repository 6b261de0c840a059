"""HTTP views of a worker: health, metrics and the analysts' state queries.

Queries about an order or an account are answered by the worker that owns the key's partition;
any other worker forwards the request there (:func:`owner_routed`), finding the owner in the
workers' reports.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import faust
import orjson
from aiohttp import web
from faust.web import Request, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from execdist.auth import Guard
from execdist.domain.access import Action
from execdist.metrics import Metrics
from execdist.services.readiness import ReadinessTracker
from execdist.services.state_queries import NotKnown, StateQueries
from execdist.services.subscription_store import NotLoaded
from execdist.settings import Settings
from execdist.topics import key_partition
from execdist.web.auth import Handler, access_control, native
from execdist.web.errors import HttpError, error_response


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


class Partitions(Protocol):
    """Which input partitions this worker holds now (the engine)."""

    @property
    def partitions(self) -> list[int]: ...


class Owners(Protocol):
    """Which other worker holds a partition (the workers' reports)."""

    def owner_url(self, partition: int) -> str | None: ...


def owner_routed(
    settings: Settings, local: Partitions, owners: Owners
) -> Callable[[str], Callable[[Handler], Handler]]:
    """Answer here when this worker owns the key's partition, else forward to its owner."""

    def decorator_for(match_info: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def routed(self: View, request: Request, **kwargs: Any) -> Any:
                key = request.match_info[match_info]
                partition = key_partition(key.encode(), settings.topic_partitions)
                if partition in local.partitions:
                    return await handler(self, request, **kwargs)
                owner = owners.owner_url(partition)
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


def register_health_views(
    app: faust.App, settings: Settings, ready: ReadinessTracker, metrics: Metrics
) -> None:
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
            if ready.ready:
                return json_response({"status": "ready", "worker": settings.worker_id})
            return error_response(
                503,
                "not_ready",
                "partitions are not assigned or tables are still recovering; retry shortly",
            )

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> web.StreamResponse:
            return web.Response(
                body=generate_latest(metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )


def register_state_views(
    app: faust.App,
    settings: Settings,
    guard: Guard,
    queries: StateQueries,
    local: Partitions,
    owners: Owners,
) -> None:
    """One order, its confirmations, one account's positions: answered by the key's owner."""
    owned = owner_routed(settings, local, owners)
    requires = access_control(guard)

    @app.page("/api/v1/orders/{order_id}")
    class OrderQuery(View):
        @api
        @requires(Action.READ)
        @owned("order_id")
        async def get(self, request: Request, order_id: str) -> web.StreamResponse:
            return json_response(known(queries.order, order_id))

    @app.page("/api/v1/orders/{order_id}/confirmations")
    class OrderConfirmations(View):
        @api
        @requires(Action.READ)
        @owned("order_id")
        async def get(self, request: Request, order_id: str) -> web.StreamResponse:
            return json_response(known(queries.confirmations, order_id))

    @app.page("/api/v1/positions/{account}")
    class Positions(View):
        @api
        @requires(Action.READ)
        @owned("account")
        async def get(self, request: Request, account: str) -> web.StreamResponse:
            return json_response(known(queries.position, account))


def known(query: Callable[[str], dict[str, object]], key: str) -> dict[str, object]:
    try:
        return query(key)
    except NotKnown as exc:
        raise HttpError(404, "not_found", str(exc)) from None
