"""Subscription management and operator views.

Who may call each view is said by its ``requires(...)`` line (the rules:
:mod:`execdist.domain.access`). The token returned when a subscription is created may read
that subscription, its status, its audit and its streams; only a hash of it is stored. What a
change does is :class:`~execdist.services.subscription_changes.SubscriptionChanges`' business;
the views read the request and render the answer.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterator

import faust
import orjson
from aiohttp import web
from faust.web import Request, View

from execdist.auth import Guard
from execdist.domain.access import Action
from execdist.domain.subscriptions import (
    InvalidSubscription,
    Subscription,
    SubscriptionStatus,
    parse_create,
    parse_dry_run,
    parse_patch,
)
from execdist.services.dry_run import FilterDryRun, ScanUnavailable
from execdist.services.reconcile import MAX_RANGE, Reconciler, ReconcileUnavailable
from execdist.services.subscription_changes import (
    SubscriptionChanges,
    SubscriptionConflict,
    SubscriptionNotFound,
)
from execdist.services.subscription_progress import ProgressUnavailable, read_progress
from execdist.services.subscription_store import SubscriptionStore
from execdist.services.webhooks import webhook_group
from execdist.services.worker_reports import WorkerReports
from execdist.settings import Settings
from execdist.web.auth import access_control, native, principal_of
from execdist.web.errors import HttpError
from execdist.web.views import api, json_response

MAX_LIMIT = 500
_CURSOR_ID = re.compile(r"[A-Za-z0-9._-]{1,236}")
"""What a cursor decodes to: the id (of a subscription or a token) the page ended with."""
DEFAULT_LIMIT = 100


def register_subscription_views(
    app: faust.App,
    settings: Settings,
    store: SubscriptionStore,
    changes: SubscriptionChanges,
    reports: WorkerReports,
    guard: Guard,
) -> None:
    requires = access_control(guard)
    dry_runs = FilterDryRun(settings)
    reconciler = Reconciler(settings)

    def existing(subscription_id: str) -> Subscription:
        with http_errors():
            return changes.existing(subscription_id)

    @app.page("/api/v1/subscriptions")
    class Subscriptions(View):
        @api
        @requires(Action.MANAGE)
        async def post(self, request: Request) -> web.StreamResponse:
            with http_errors():
                create = parse_create(await read_json(request))
                created = await changes.create(create, principal_of(request))
            return json_response(
                {**created.subscription.to_dict(), "token": created.token}, status=201
            )

        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            limit = page_limit(request.query.get("limit"))
            after = page_cursor(request.query.get("cursor"))
            status = request.query.get("status")
            if status is not None and status not in SubscriptionStatus.__members__:
                raise HttpError(400, "invalid", "status must be one of ACTIVE, PAUSED", "status")
            items = [
                s
                for s in store.all()
                if (after is None or s.id > after) and (status is None or s.status.value == status)
            ]
            page = items[:limit]
            next_cursor = encode_cursor(page[-1].id) if len(items) > limit else None
            return json_response({"items": [s.to_dict() for s in page], "next_cursor": next_cursor})

    @app.page("/api/v1/subscriptions/dry-run")
    class DryRun(View):
        """What a filter would have matched since a time; creates nothing."""

        @api
        @requires(Action.MANAGE)
        async def post(self, request: Request) -> web.StreamResponse:
            with http_errors():
                trial = parse_dry_run(await read_json(request))
            try:
                result = await dry_runs.run(trial)
            except ScanUnavailable as exc:
                raise HttpError(503, "not_ready", f"{exc}; retry shortly") from exc
            return json_response(result.to_dict())

    @app.page("/api/v1/subscriptions/{subscription_id}")
    class OneSubscription(View):
        @api
        @requires(Action.READ_SUBSCRIPTION, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            return json_response(existing(subscription_id).to_dict())

        @api
        @requires(Action.MANAGE)
        async def patch(self, request: Request, subscription_id: str) -> web.StreamResponse:
            with http_errors():
                await changes.current(subscription_id)  # 404 before a body is judged
                patch = parse_patch(await read_json(request))
                changed = await changes.change(subscription_id, patch, principal_of(request))
            return json_response(changed.to_dict())

        @api
        @requires(Action.MANAGE)
        async def delete(self, request: Request, subscription_id: str) -> web.StreamResponse:
            with http_errors():
                await changes.delete(subscription_id, principal_of(request))
            return web.Response(status=204)

    @app.page("/api/v1/subscriptions/{subscription_id}/audit")
    class SubscriptionAuditView(View):
        @api
        @requires(Action.READ_SUBSCRIPTION, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            limit = page_limit(request.query.get("limit"))
            after = audit_cursor(request.query.get("cursor"))
            with http_errors():
                page = await changes.audit(subscription_id, after=after, limit=limit)
            next_cursor = (
                None if page.last_position is None else encode_cursor(str(page.last_position))
            )
            return json_response(
                {"items": [entry.to_dict() for entry in page.items], "next_cursor": next_cursor}
            )

    @app.page("/api/v1/subscriptions/{subscription_id}/reconcile")
    class ReconcileView(View):
        """The count and SHA-256 of the records in a sub_seq range, for a downstream to
        compare with what it holds."""

        @api
        @requires(Action.READ_SUBSCRIPTION, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            subscription = existing(subscription_id)
            from_seq, to_seq = seq_range(request.query.get("from_seq"), request.query.get("to_seq"))
            try:
                result = await reconciler.run(subscription.topic, from_seq, to_seq)
            except ReconcileUnavailable as exc:
                raise HttpError(503, "not_ready", str(exc)) from exc
            return json_response(result.to_dict())

    @app.page("/api/v1/subscriptions/{subscription_id}/status")
    class SubscriptionStatusView(View):
        @api
        @requires(Action.READ_SUBSCRIPTION, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            subscription = existing(subscription_id)
            delivery, reporting = reports.subscription_delivery(subscription_id)
            latency = delivery.latency.percentiles()
            # a webhook's acknowledgements are its dispatcher's group's commits
            group = (
                webhook_group(settings.app_id, subscription.id)
                if subscription.delivery is not None
                else subscription.consumer_group
            )
            try:
                progress = await read_progress(
                    settings, subscription.topic, subscription.partitions, group
                )
            except ProgressUnavailable as exc:
                raise HttpError(503, "not_ready", f"{exc}; retry shortly") from exc
            acknowledged = (
                progress.group_acknowledged if group is not None else delivery.acknowledged
            )
            last = progress.last_sub_seq
            return json_response(
                {
                    "subscription_id": subscription_id,
                    "status": subscription.status.value,
                    "delivered": delivery.delivered,
                    "last_delivery_at": None
                    if delivery.last_delivery is None
                    else delivery.last_delivery.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "rate_per_s": reports.subscription_rate(subscription_id),
                    "latency_ms": latency,
                    "workers_reporting": reporting,
                    "last_sub_seq": last,
                    "acknowledged_sub_seq": acknowledged,
                    "lag": None if acknowledged is None else max((last or 0) - acknowledged, 0),
                    "webhook": None
                    if subscription.delivery is None
                    else {
                        "acknowledged_sub_seq": acknowledged,
                        "last_error": delivery.webhook_error,
                    },
                }
            )

    @app.page("/api/v1/status")
    class ClusterStatus(View):
        @api
        @requires(Action.READ)
        async def get(self, request: Request) -> web.StreamResponse:
            workers = [
                {
                    "worker_id": r["worker_id"],
                    "url": r["url"],
                    "partitions": r.get("partitions", []),
                    "last_seen": r["time"],
                    "confirmations_total": r.get("confirmations_total", 0),
                    "rate_per_s": r.get("rate_per_s", 0.0),
                    "lag": r.get("lag", 0),
                }
                for r in reports.live_reports()
            ]
            subscriptions = store.all()
            return json_response(
                {
                    "workers": workers,
                    "partitions": settings.topic_partitions,
                    "total_lag": sum(int(str(w["lag"])) for w in workers),
                    "confirmations_per_s": round(
                        sum(float(str(w["rate_per_s"])) for w in workers), 3
                    ),
                    "distribution_latency_ms": reports.cluster_latency().percentiles(),
                    "subscriptions": {
                        "active": sum(1 for s in subscriptions if s.is_active),
                        "paused": sum(1 for s in subscriptions if not s.is_active),
                    },
                }
            )


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """The use cases' refusals as the contract's errors."""
    try:
        yield
    except InvalidSubscription as exc:
        raise HttpError(400, "invalid", exc.message, exc.field) from None
    except SubscriptionNotFound as exc:
        raise HttpError(404, "not_found", str(exc)) from None
    except SubscriptionConflict as exc:
        raise HttpError(409, "conflict", str(exc), exc.field) from None


MAX_BODY_BYTES = 64 * 1024


async def read_json(request: Request) -> object:
    """The request's JSON body; 413 over :data:`MAX_BODY_BYTES`, 400 if it is not JSON."""
    too_large = HttpError(413, "too_large", "the request body must be at most 64 KiB")
    length = native(request).content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        # aiohttp's own limit (client_max_size), hit by a large body without Content-Length.
        raise too_large from None
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HttpError(400, "invalid", "the body must be a JSON object", "body") from None


def seq_range(raw_from: str | None, raw_to: str | None) -> tuple[int, int]:
    """``from_seq`` and ``to_seq`` of a reconcile request: whole numbers from 1, in order, at
    most :data:`MAX_RANGE` apart."""
    bounds = []
    for name, raw in (("from_seq", raw_from), ("to_seq", raw_to)):
        if raw is None or not raw.isdigit() or int(raw) < 1:
            raise HttpError(400, "invalid", f"{name} must be a whole number from 1", name)
        bounds.append(int(raw))
    from_seq, to_seq = bounds
    if to_seq < from_seq:
        raise HttpError(400, "invalid", "to_seq must not be below from_seq", "to_seq")
    if to_seq - from_seq + 1 > MAX_RANGE:
        raise HttpError(
            400,
            "invalid",
            f"a range may cover at most {MAX_RANGE} records; ask for it in parts",
            "to_seq",
        )
    return from_seq, to_seq


def page_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    # ASCII digits only (str.isdigit() also takes "²", which int() refuses, and other scripts'
    # digits), and a short string, since int() refuses more than 4300 digits.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= MAX_LIMIT:
        raise HttpError(
            400, "invalid", f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit"
        )
    return int(raw)


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def page_cursor(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        # validate=True: without it, characters outside the alphabet are skipped silently, so
        # "!!" decoded to "" and listed from the start instead of being refused.
        decoded = base64.b64decode(
            raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True
        ).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not _CURSOR_ID.fullmatch(decoded):
        raise HttpError(400, "invalid", "cursor is not one this API returned", "cursor")
    return decoded


def audit_cursor(raw: str | None) -> int | None:
    """The log position an audit page ended with, from the cursor that page returned."""
    decoded = page_cursor(raw)
    if decoded is None:
        return None
    if not (decoded.isascii() and decoded.isdigit()) or len(decoded) > 18:
        raise HttpError(400, "invalid", "cursor is not one this API returned", "cursor")
    return int(decoded)
