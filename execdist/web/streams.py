"""Real-time transports over HTTP: the WebSocket relay and Server-Sent Events.

Both read through the worker's :class:`~execdist.relay.hub.RelayHub`, so any worker serves any
subscription (the subscription topic is the source, not the worker that produced it). The
token may come as ``Authorization: Bearer`` or, for browsers, as ``?token=``; the web server
keeps no access log, so tokens in URLs are not written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import faust
import orjson
from aiohttp import WSMsgType, web
from faust.web import Request, View

from execdist.auth import Guard
from execdist.domain.access import Action
from execdist.domain.delivery import DeliveryStats
from execdist.domain.model import format_time
from execdist.domain.subscriptions import Subscription
from execdist.relay.hub import (
    ConflatingClient,
    CursorExpired,
    Frame,
    InvalidConflation,
    InvalidCursor,
    RelayClient,
    RelayHub,
    SnapshotFrames,
    parse_conflate,
    parse_cursor,
)
from execdist.relay.snapshot import SnapshotUnavailable
from execdist.services.subscription_store import SubscriptionStore
from execdist.web.auth import access_control, native
from execdist.web.errors import HttpError
from execdist.web.views import api

SEND_TIMEOUT_S = 5.0
"""A client that takes longer than this to accept the frames waiting for it (at most
``SEND_BATCH``) is too slow."""
SEND_BATCH = 100
WRITE_BACKLOG = 64 * 1024
"""Bytes a client's connection may hold unsent (beyond its socket's buffer) before its frames
wait in its queue instead of being written as they come."""
DRAIN_POLL_S = 0.005
"""How often a sender with a backlog looks whether its connection has drained."""
"""Frames a client's sender writes in one go before it looks at the queue again."""
CLOSE_TIMEOUT_S = 2.0
MAX_CLIENT_MESSAGES = 50
"""Messages a client may send per 10 s; clients have nothing to say, so more is a flood."""
TOO_SLOW = 1013
CURSOR_EXPIRED = 4410
TRY_AGAIN_LATER = 1011
"""The server could not take the snapshot (the topic was not read in time): retry."""
GOING_AWAY = 1001


def register_stream_views(
    app: faust.App,
    store: SubscriptionStore,
    hub: RelayHub,
    stats: DeliveryStats,
    guard: Guard,
) -> None:
    requires = access_control(guard)

    def existing(subscription_id: str) -> Subscription:
        subscription = store.get(subscription_id)
        if subscription is None:
            raise HttpError(404, "not_found", f"no subscription {subscription_id!r}")
        return subscription

    def start_from(value: str | None, subscription: Subscription) -> str:
        start = value or "latest"
        if start not in ("latest", "earliest", "snapshot"):
            try:
                parse_cursor(start, subscription.partitions)
            except InvalidCursor as exc:
                raise HttpError(400, "invalid", str(exc), "from") from None
        return start

    def conflation(value: str | None) -> int | None:
        try:
            return parse_conflate(value)
        except InvalidConflation as exc:
            raise HttpError(400, "invalid", str(exc), "conflate") from None

    @app.page("/api/v1/subscriptions/{subscription_id}/stream")
    class WebSocketStream(View):
        @api
        @requires(Action.STREAM, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            subscription = existing(subscription_id)
            start = start_from(request.query.get("from"), subscription)
            conflate_ms = conflation(request.query.get("conflate"))
            # no permessage-deflate: frames are written once per subscription as bytes shared
            # by its clients, and compressing a ~600-byte frame per client costs more CPU
            # than it saves on the wire
            ws = web.WebSocketResponse(max_msg_size=4096, autoping=True, compress=False)
            if not ws.can_prepare(native(request)).ok:
                raise HttpError(400, "invalid", "this endpoint needs a WebSocket upgrade request")
            await ws.prepare(native(request))
            _bound_send_buffer(request)
            try:
                if start == "snapshot":
                    start = await _send_snapshot(ws, hub, subscription)
                client = await hub.connect(
                    subscription.topic, subscription.partitions, start, conflate_ms
                )
            except CursorExpired as expired:
                await ws.send_str(expired.frame().decode())
                await _close(ws, CURSOR_EXPIRED, b"cursor expired")
                return ws
            except SnapshotUnavailable as exc:
                await _close(ws, TRY_AGAIN_LATER, str(exc).encode()[:120])
                return ws
            except ConnectionResetError:
                return ws
            listener = asyncio.create_task(
                _watch_client_messages(ws, partial(stats.acknowledge, subscription.id))
            )
            try:
                await _pump_websocket(ws, client, listener, native(request).transport)
            finally:
                listener.cancel()
                hub.disconnect(subscription.topic, client)
            return ws

    @app.page("/api/v1/subscriptions/{subscription_id}/events")
    class ServerSentEvents(View):
        @api
        @requires(Action.STREAM, "subscription_id")
        async def get(self, request: Request, subscription_id: str) -> web.StreamResponse:
            subscription = existing(subscription_id)
            start = start_from(
                request.headers.get("Last-Event-ID") or request.query.get("from"), subscription
            )
            conflate_ms = conflation(request.query.get("conflate"))
            snapshot = None
            try:
                if start == "snapshot":
                    snapshot = await hub.snapshot(subscription.topic, subscription.partitions)
                    start = snapshot.cursor
                client = await hub.connect(
                    subscription.topic, subscription.partitions, start, conflate_ms
                )
            except CursorExpired as expired:
                return web.Response(
                    body=b"event: error\ndata: " + expired.frame() + b"\n\n",
                    headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                )
            except SnapshotUnavailable as exc:
                raise HttpError(503, "not_ready", str(exc)) from exc
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(native(request))
            _bound_send_buffer(request)
            try:
                await response.write(b"retry: 1000\n\n")
                if snapshot is not None:
                    await _send_sse_snapshot(response, snapshot)
                await _pump_sse(response, client)
            except (ConnectionResetError, TimeoutError):
                client.too_slow = True  # it went away or stalled: nothing more to send
            finally:
                hub.disconnect(subscription.topic, client)
            if client.too_slow and not client.shutting_down:
                # what is written (the error event included) is flushed as far as the client
                # reads, then the connection closes: a stalled client holds no more than its
                # socket's buffers, and never an open stream
                transport = native(request).transport
                if transport is not None:
                    transport.close()
            return response


SOCKET_SEND_BUFFER = 256 * 1024
"""Kernel send buffer per streaming client: bounds memory per client and lets a client that
stops reading be noticed (and closed) within a few hundred kilobytes, not megabytes."""


def _bound_send_buffer(request: Request) -> None:
    transport = native(request).transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)


async def _send_snapshot(
    ws: web.WebSocketResponse, hub: RelayHub, subscription: Subscription
) -> str:
    """Send the subscription's snapshot frames and ``snapshot_end``; returns the cursor live
    delivery goes on from."""
    snapshot = await hub.snapshot(subscription.topic, subscription.partitions)
    async with asyncio.timeout(SEND_TIMEOUT_S + len(snapshot.records) / 1000):
        for message in snapshot.websocket_messages():
            await ws.send_frame(message, WSMsgType.TEXT)
        await ws.send_frame(orjson.dumps(snapshot.end()), WSMsgType.TEXT)
    return snapshot.cursor


async def _send_sse_snapshot(response: web.StreamResponse, snapshot: SnapshotFrames) -> None:
    """Snapshot events carry the record as their data, like confirmation events; the
    ``snapshot_end`` event carries the cursor as its id, so a reconnect goes on live."""
    chunks = [b"event: snapshot\ndata: %s\n\n" % value for _, value in snapshot.records]
    chunks.append(
        b"id: %s\nevent: snapshot_end\ndata: %s\n\n"
        % (snapshot.cursor.encode(), orjson.dumps(snapshot.end()))
    )
    async with asyncio.timeout(SEND_TIMEOUT_S + len(chunks) / 1000):
        for start in range(0, len(chunks), 256):
            await response.write(b"".join(chunks[start : start + 256]))


def heartbeat_text() -> str:
    return f'{{"type":"heartbeat","time":"{format_time(datetime.now(UTC))}"}}'


async def _pump_websocket(
    ws: web.WebSocketResponse,
    client: RelayClient,
    listener: asyncio.Task[None],
    transport: asyncio.Transport | None,
) -> None:
    """Send the client its frames. Frames are written as they are offered while the
    connection keeps up (:attr:`RelayClient.direct`); this loop sends heartbeats, closes, and
    writes the backlog once the connection drains, waiting at most ``SEND_TIMEOUT_S``."""
    if transport is not None and not isinstance(client, ConflatingClient):
        client.direct = partial(_write_now, transport)
    try:
        while not ws.closed and not listener.done():
            frames = await client.next_batch(SEND_BATCH)
            if client.shutting_down:
                await _close(
                    ws, GOING_AWAY, b"worker shutting down; reconnect with your last cursor"
                )
                return
            if client.too_slow:
                await _close(ws, TOO_SLOW, b"client too slow")
                return
            if not frames:
                await ws.send_str(heartbeat_text())
                continue
            client.sending = True
            try:
                if transport is None or transport.is_closing():
                    return
                if transport.get_write_buffer_size() > WRITE_BACKLOG:
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        while transport.get_write_buffer_size() > WRITE_BACKLOG // 2:
                            await asyncio.sleep(DRAIN_POLL_S)
                            if transport.is_closing():
                                return
                # the frame bytes are shared by every client of the subscription in step
                transport.write(b"".join(frame.websocket_wire() for frame in frames))
            finally:
                client.sending = False
    except TimeoutError:
        client.direct = None
        client.too_slow = True
        await _close(ws, TOO_SLOW, b"client too slow")
    except ConnectionResetError:
        return
    finally:
        client.direct = None


def _write_now(transport: asyncio.Transport, frames: list[Frame]) -> bool:
    """Write ``frames`` in one write unless the connection is backed up (then they wait in
    the queue)."""
    if transport.is_closing() or transport.get_write_buffer_size() > WRITE_BACKLOG:
        return False
    if len(frames) == 1:
        transport.write(frames[0].websocket_wire())
    else:
        transport.write(b"".join([frame.websocket_wire() for frame in frames]))
    return True


async def _close(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Close with ``code``; a client that does not read still gets the close frame queued."""
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), CLOSE_TIMEOUT_S)
    except (TimeoutError, ConnectionResetError):
        transport = ws._req.transport if ws._req is not None else None
        if transport is not None:
            transport.close()  # flushes what is buffered, the close frame included


async def _watch_client_messages(
    ws: web.WebSocketResponse, acknowledge: Callable[[int], None]
) -> None:
    """A client may acknowledge what it holds, ``{"type": "ack", "sub_seq": n}``; anything
    else it sends is ignored, and a flood of messages closes the connection (1008)."""
    window_start = time.monotonic()
    count = 0
    async for message in ws:
        if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            return
        if message.type is WSMsgType.TEXT:
            sub_seq = _acknowledged(message.data)
            if sub_seq is not None:
                acknowledge(sub_seq)
        now = time.monotonic()
        if now - window_start > 10.0:
            window_start, count = now, 0
        count += 1
        if count > MAX_CLIENT_MESSAGES:
            with contextlib.suppress(ConnectionResetError):
                await ws.close(code=1008, message=b"too many messages from the client")
            return


def _acknowledged(text: str) -> int | None:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("type") != "ack":
        return None
    sub_seq = data.get("sub_seq")
    return sub_seq if isinstance(sub_seq, int) and not isinstance(sub_seq, bool) else None


async def _pump_sse(response: web.StreamResponse, client: RelayClient) -> None:
    while True:
        frame = await client.next()
        if client.shutting_down:
            return  # the client reconnects with Last-Event-ID
        if client.too_slow:
            await asyncio.wait_for(
                response.write(b'event: error\ndata: {"reason": "client too slow"}\n\n'),
                CLOSE_TIMEOUT_S,
            )
            return
        if frame is None:
            chunk = f"event: heartbeat\ndata: {heartbeat_text()}\n\n".encode()
        else:
            chunk = (
                b"id: "
                + frame.cursor.encode()
                + b"\nevent: confirmation\ndata: "
                + frame.value_with_folded()
                + b"\n\n"
            )
        await asyncio.wait_for(response.write(chunk), SEND_TIMEOUT_S)
