"""The gRPC relay: ``execdist.v1.Distribution/Subscribe`` on every worker.

It reads through the worker's :class:`~execdist.relay.hub.RelayHub` exactly like the WebSocket
and SSE relays (execdist.web.streams), with the same rules and the same guard
(:class:`execdist.auth.Guard`, action ``STREAM``): an admin token or the subscription's own
token (``authorization`` metadata, ``Bearer <token>`` or the bare token),
``from`` = latest (default), earliest or a cursor, resuming with the last cursor seen continues
with no gap and no repeat, a heartbeat after 5 s without a confirmation, and a client too slow
to keep up is ended (``RESOURCE_EXHAUSTED``) instead of slowing anyone else.

HTTP status -> gRPC code: 401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED, 404 -> NOT_FOUND,
400 -> INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson
from google.protobuf.descriptor import FieldDescriptor
from mode import Service

from execdist.auth import Forbidden, Guard, Unauthenticated
from execdist.domain.access import Action
from execdist.domain.model import format_time
from execdist.domain.subscriptions import Subscription
from execdist.grpc import execdist_pb2 as pb
from execdist.grpc import execdist_pb2_grpc as pb_grpc
from execdist.relay.hub import (
    CursorExpired,
    Frame,
    InvalidConflation,
    InvalidCursor,
    RelayHub,
    SnapshotFrames,
    parse_conflate,
    parse_cursor,
)
from execdist.relay.snapshot import SnapshotUnavailable
from execdist.services.subscription_store import NotLoaded, SubscriptionStore
from execdist.settings import Settings

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
"""A client that takes longer than this to accept one message is too slow."""
STOP_GRACE_S = 1.0
"""How long open streams get to finish when the worker stops."""
TOO_SLOW = "client too slow"

_INT_FIELDS = frozenset(
    field.name
    for field in pb.Confirmation.DESCRIPTOR.fields
    if field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_INT32)
)
_FIELDS = frozenset(field.name for field in pb.Confirmation.DESCRIPTOR.fields)


class RequestRefused(Exception):
    """A request the servicer answers with ``code`` before streaming anything."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def token_from_metadata(metadata: Any) -> str | None:
    """The token of the ``authorization`` metadata: ``Bearer <token>`` or the bare token."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        text = text.strip()
        if text[:7].lower() == "bearer ":
            text = text[7:].strip()
        return text or None
    return None


def confirmation_message(value: bytes) -> pb.Confirmation:
    """The JSON bytes of a confirmation as a ``Confirmation`` message (null -> unset)."""
    data = orjson.loads(value)
    if not isinstance(data, Mapping):
        raise ValueError("a confirmation must be a JSON object")
    fields: dict[str, Any] = {}
    for name, item in data.items():
        if name not in _FIELDS or item is None:
            continue
        if name == "anomaly":
            fields[name] = pb.Anomaly(
                rules=[str(rule) for rule in item["rules"]],
                details={str(key): str(value) for key, value in item["details"].items()},
            )
        else:
            fields[name] = int(item) if name in _INT_FIELDS else str(item)
    return pb.Confirmation(**fields)


def confirmation_response(frame: Frame) -> pb.SubscribeResponse:
    return pb.SubscribeResponse(
        confirmation=pb.ConfirmationFrame(
            cursor=frame.cursor, data=confirmation_message(frame.value), folded=frame.folded
        )
    )


def snapshot_responses(snapshot: SnapshotFrames) -> list[pb.SubscribeResponse]:
    responses = [
        pb.SubscribeResponse(
            snapshot=pb.SnapshotFrame(sub_seq=sub_seq, data=confirmation_message(value))
        )
        for sub_seq, value in snapshot.records
    ]
    responses.append(
        pb.SubscribeResponse(
            snapshot_end=pb.SnapshotEnd(
                cursor=snapshot.cursor, sub_seq=snapshot.sub_seq, orders=len(snapshot.records)
            )
        )
    )
    return responses


def heartbeat_response() -> pb.SubscribeResponse:
    return pb.SubscribeResponse(heartbeat=pb.Heartbeat(time=format_time(datetime.now(UTC))))


class DistributionServicer(pb_grpc.DistributionServicer):
    """``Subscribe``: a subscription's confirmations through the relay hub."""

    def __init__(self, guard: Guard, store: SubscriptionStore, hub: RelayHub) -> None:
        self._guard = guard
        self._store = store
        self._hub = hub

    def authorize(self, token: str | None, subscription_id: str) -> Subscription:
        """The guard's answer, then the subscription: as the WebSocket and SSE relays do."""
        if token is None:
            raise RequestRefused(
                grpc.StatusCode.UNAUTHENTICATED,
                "send the 'authorization' metadata: 'Bearer <token>'",
            )
        try:
            self._guard.authorize(token, Action.STREAM, subscription_id)
        except Unauthenticated as exc:
            raise RequestRefused(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        except Forbidden as exc:
            raise RequestRefused(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None
        except NotLoaded as exc:
            raise RequestRefused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        subscription = self._store.get(subscription_id)
        if subscription is None:
            raise RequestRefused(grpc.StatusCode.NOT_FOUND, f"no subscription {subscription_id!r}")
        return subscription

    @staticmethod
    def start_from(value: str, subscription: Subscription) -> str:
        start = value or "latest"
        if start not in ("latest", "earliest", "snapshot"):
            try:
                parse_cursor(start, subscription.partitions)
            except InvalidCursor as exc:
                raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return start

    @staticmethod
    def conflation(request: pb.SubscribeRequest) -> int | None:
        if not request.HasField("conflate_ms"):
            return None
        try:
            return parse_conflate(request.conflate_ms)
        except InvalidConflation as exc:
            raise RequestRefused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        try:
            subscription = self.authorize(
                token_from_metadata(context.invocation_metadata()), request.subscription_id
            )
            start = self.start_from(getattr(request, "from"), subscription)
            conflate_ms = self.conflation(request)
        except RequestRefused as refused:
            await context.abort(refused.code, refused.message)
            return
        try:
            if start == "snapshot":
                snapshot = await self._hub.snapshot(subscription.topic, subscription.partitions)
                for response in snapshot_responses(snapshot):
                    await context.write(response)
                start = snapshot.cursor
            client = await self._hub.connect(
                subscription.topic, subscription.partitions, start, conflate_ms
            )
        except CursorExpired as expired:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, expired.frame().decode())
            return
        except SnapshotUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry")
            return
        try:
            while True:
                frame = await client.next()
                if client.shutting_down:
                    self._hub.disconnect(subscription.topic, client)
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        "worker shutting down; reconnect with your last cursor",
                    )
                    return
                if client.too_slow:
                    break
                try:
                    response = (
                        heartbeat_response() if frame is None else confirmation_response(frame)
                    )
                except ValueError:  # orjson.JSONDecodeError is a ValueError
                    log.exception("undecodable record on %s", subscription.topic)
                    await context.abort(
                        grpc.StatusCode.INTERNAL,
                        f"the confirmation before cursor {frame.cursor if frame else ''} "
                        "could not be decoded as JSON",
                    )
                    return
                try:
                    await asyncio.wait_for(context.write(response), SEND_TIMEOUT_S)
                except TimeoutError:
                    client.too_slow = True  # counted as such when it is disconnected
                    break
        finally:
            self._hub.disconnect(subscription.topic, client)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, TOO_SLOW)


class GrpcPortInUse(RuntimeError):
    """The gRPC port could not be bound."""


class GrpcServer(Service):
    """Runs the gRPC server of this worker on ``web_host:grpc_port``."""

    def __init__(
        self,
        settings: Settings,
        guard: Guard,
        store: SubscriptionStore,
        hub: RelayHub,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._servicer = DistributionServicer(guard, store, hub)
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        host = self._settings.web_host or "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        return f"{host}:{self._settings.grpc_port}"

    async def on_start(self) -> None:
        # no SO_REUSEPORT: a second worker on the same port must fail, not share it
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_DistributionServicer_to_server(  # type: ignore[no-untyped-call]
            self._servicer, server
        )
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            bound = 0
            cause: Exception | None = exc
        else:
            cause = None
        if not bound:
            await server.stop(None)
            raise GrpcPortInUse(
                f"cannot serve gRPC on {self.address}: the port is in use or the address is "
                "not available. Choose another with EXECDIST_GRPC_PORT."
            ) from cause
        await server.start()
        self._server = server
        log.info("gRPC relay listening on %s", self.address)

    async def on_stop(self) -> None:
        if self._server is not None:
            await self._server.stop(STOP_GRACE_S)
            self._server = None
