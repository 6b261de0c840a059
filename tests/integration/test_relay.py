"""The real-time relay through two real workers: WebSocket and SSE resume, cross-worker
delivery, a stalled client closed with 1013 while a healthy one keeps up, token scopes."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
from collections.abc import Iterator

import aiohttp
import httpx
import orjson
import pytest

from tests.integration.conftest import (
    Worker,
    read_committed,
)
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import flows, produce, subscribe, truncate, worker_pair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(
        tmp_path_factory, "relay", extra_env={"EXECDIST_RELAY_CLIENT_QUEUE": "1000"}
    )


def ws_url(worker: Worker, subscription: dict[str, object], start: str, token: str) -> str:
    return (
        f"ws://127.0.0.1:{worker.web_port}/api/v1/subscriptions/{subscription['id']}/stream"
        f"?from={start}&token={token}"
    )


async def read_ws(url: str, count: int, timeout: float = 60.0) -> tuple[list[dict], str | None]:
    """Up to ``count`` confirmation frames; returns them and the last cursor."""
    frames: list[dict] = []
    cursor = None
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(frames) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"only {len(frames)} of {count} frames arrived"
            message = await ws.receive(timeout=remaining)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            frame = orjson.loads(message.data)
            if frame["type"] == "confirmation":
                frames.append(frame["data"])
                cursor = frame["cursor"]
            else:
                assert frame["type"] == "heartbeat"
    return frames, cursor


async def test_websocket_resume_across_workers_has_no_gap_and_no_repeat(workers) -> None:
    first, second = workers
    subscription = await subscribe(first)
    records = flows("WS", 120, 21)
    await produce(records)
    expected = [c["exec_id"] for items in expected_confirmations(records).values() for c in items]
    await read_committed([str(subscription["topic"])], lambda got: len(got) >= len(expected), 60)
    half = len(expected) // 2
    token = str(subscription["token"])
    head, cursor = await read_ws(ws_url(first, subscription, "earliest", token), half)
    assert cursor is not None
    # resume on the other worker, which did not serve the first half
    tail, last = await read_ws(ws_url(second, subscription, cursor, token), len(expected) - half)
    got = [c["exec_id"] for c in head + tail]
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(expected)
    # nothing is left after the last cursor: the next frame is a heartbeat, not a repeat
    url = ws_url(first, subscription, str(last), token)
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        frame = orjson.loads((await ws.receive(timeout=15)).data)
    assert frame["type"] == "heartbeat"


async def test_live_frames_reach_clients_on_both_workers(workers) -> None:
    first, second = workers
    subscription = await subscribe(first, accounts=["ACC-EQ-01"])
    token = str(subscription["token"])
    records = flows("LIVE", 80, 4)
    expected = [
        c["exec_id"]
        for items in expected_confirmations(records).values()
        for c in items
        if c["account"] == "ACC-EQ-01"
    ]
    assert expected
    readers = [
        asyncio.create_task(read_ws(ws_url(w, subscription, "latest", token), len(expected)))
        for w in (first, second)
    ]
    await asyncio.sleep(1.0)
    await produce(records)
    for task in readers:
        frames, _ = await task
        assert sorted(c["exec_id"] for c in frames) == sorted(expected)
        assert all(c["account"] == "ACC-EQ-01" for c in frames)


async def test_sse_resumes_with_last_event_id(workers) -> None:
    first, second = workers
    subscription = await subscribe(first)
    records = flows("SSE", 40, 9)
    await produce(records)
    expected = [c["exec_id"] for items in expected_confirmations(records).values() for c in items]
    await read_committed([str(subscription["topic"])], lambda got: len(got) >= len(expected), 60)
    headers = {"Authorization": f"Bearer {subscription['token']}"}

    async def read_sse(worker: Worker, count: int, last_id: str | None) -> tuple[list[str], str]:
        got: list[str] = []
        event_id = last_id or ""
        params = {} if last_id else {"from": "earliest"}
        extra = {"Last-Event-ID": last_id} if last_id else {}
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream(
                "GET",
                f"{worker.url}/api/v1/subscriptions/{subscription['id']}/events",
                params=params,
                headers={**headers, **extra},
            ) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if event.get("event") == "confirmation":
                        got.append(orjson.loads(event["data"])["exec_id"])
                        event_id = event["id"]
                        if len(got) >= count:
                            break
                    event = {}
                    continue
                field, _, value = line.partition(": ")
                event[field] = value
        return got, event_id

    half = len(expected) // 2
    head, last_id = await read_sse(first, half, None)
    tail, _ = await read_sse(second, len(expected) - half, last_id)
    assert sorted(head + tail) == sorted(expected)
    assert len(set(head + tail)) == len(expected)


HEALTHY_CLIENT = """
import asyncio, sys, aiohttp, orjson
async def main(url, count):
    got = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        while len(got) < count:
            message = await ws.receive(timeout=90)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise SystemExit(f"closed after {len(got)} frames: {message}")
            frame = orjson.loads(message.data)
            if frame["type"] == "confirmation":
                got.append(frame["data"]["exec_id"])
    sys.stdout.write(orjson.dumps(got).decode())
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_stalled_client_is_closed_with_1013_and_healthy_one_keeps_up(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    token = str(subscription["token"])
    stalled = await _stalled_websocket(first, str(subscription["id"]), token)
    records = flows("SLOW", 900, 13)
    expected = [c["exec_id"] for items in expected_confirmations(records).values() for c in items]
    # the healthy client is a process of its own, as a real client would be
    healthy = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HEALTHY_CLIENT,
        ws_url(first, subscription, "latest", token),
        str(len(expected)),
        stdout=asyncio.subprocess.PIPE,
        # a client at full speed: not slowed down by the suite's coverage measurement
        env={k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_START"},
    )
    await asyncio.sleep(3.0)
    await produce(records)
    out, _ = await asyncio.wait_for(healthy.communicate(), 120)
    assert healthy.returncode == 0
    assert sorted(orjson.loads(out)) == sorted(expected)
    # the stalled client now reads what was buffered: it must end in a close frame with 1013
    code = await asyncio.wait_for(asyncio.to_thread(_drain_until_close, stalled), 60)
    assert code == 1013


async def test_stream_refuses_other_tokens_and_bad_cursors(workers) -> None:
    first, _ = workers
    mine = await subscribe(first)
    other = await subscribe(first)
    async with aiohttp.ClientSession() as session:
        for token, status in ((other["token"], 403), ("bogus-token", 401)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url(first, mine, "latest", str(token)))
            assert refused.value.status == status
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad_cursor:
            await session.ws_connect(ws_url(first, mine, "nonsense", str(mine["token"])))
        assert bad_cursor.value.status == 400
    async with httpx.AsyncClient(base_url=first.url) as http:
        sse = await http.get(
            f"/api/v1/subscriptions/{mine['id']}/events",
            headers={"Authorization": f"Bearer {other['token']}"},
        )
        assert sse.status_code == 403
        assert sse.json()["error"]["code"] == "forbidden"


async def _stalled_websocket(worker: Worker, subscription_id: str, token: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", worker.web_port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /api/v1/subscriptions/{subscription_id}/stream?from=latest&token={token} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{worker.web_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def _drain_until_close(sock: socket.socket) -> int:
    """Read frames until the server's close frame; return its code."""
    sock.settimeout(30)
    buffer = b""

    def read(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed without a close frame")
            buffer += chunk
        data, buffer = buffer[:n], buffer[n:]
        return data

    while True:
        first, second = read(2)
        opcode = first & 0x0F
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(read(2), "big")
        elif length == 127:
            length = int.from_bytes(read(8), "big")
        payload = read(length)
        if opcode == 0x8:
            sock.close()
            return int.from_bytes(payload[:2], "big")


async def test_a_cursor_older_than_the_topic_gets_cursor_expired_never_a_jump(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    records = flows("EXPIRED", 10, 4)
    await produce(records)
    total = sum(len(items) for items in expected_confirmations(records).values())
    await read_committed([str(subscription["topic"])], lambda got: len(got) >= total, 60)
    truncate(str(subscription["topic"]), 0, 5)
    token = str(subscription["token"])
    expected_frame = {"type": "error", "code": "cursor_expired", "earliest": "0:5"}

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(first, subscription, "0:2", token)) as ws:
            message = await ws.receive(timeout=30)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            assert orjson.loads(message.data) == expected_frame
            closing = await ws.receive(timeout=30)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 4410
        # a cursor still inside the topic reads on from there
        frames, _ = await read_ws(ws_url(first, subscription, "0:5", token), 1, timeout=30)
        assert frames

    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(
            f"{first.url}/api/v1/subscriptions/{subscription['id']}/events",
            params={"from": "0:0"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200
    assert response.text.startswith("event: error\ndata: ")
    assert orjson.loads(response.text.split("data: ", 1)[1]) == expected_frame


async def test_conflation_folds_a_burst_a_plain_client_cannot_keep_up_with(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    token = str(subscription["token"])
    stalled = await _stalled_websocket(first, str(subscription["id"]), token)
    url = ws_url(first, subscription, "latest", token) + "&conflate=200"
    frames: list[dict] = []
    records = flows("FOLD", 900, 17)
    expected = expected_confirmations(records)
    total = sum(len(items) for items in expected.values())

    async def read_slowly() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            async for message in ws:
                frame = orjson.loads(message.data)
                if frame["type"] == "confirmation":
                    frames.append(frame)
                    await asyncio.sleep(0.002)  # a screen that renders each frame
                if frames and frames[-1]["sub_seq"] >= total:
                    return

    reader = asyncio.create_task(read_slowly())
    await asyncio.sleep(1.0)
    await produce(records)
    await asyncio.wait_for(reader, 120)

    folded = [s for frame in frames for s in frame.get("folded", [frame["sub_seq"]])]
    assert sorted(folded) == list(range(1, total + 1)), "every record stands in exactly one frame"
    assert len(frames) < total, "a burst is folded"
    assert all(frame.get("folded", [frame["sub_seq"]])[-1] == frame["sub_seq"] for frame in frames)
    last_frame = {frame["data"]["order_id"]: frame["data"] for frame in frames}
    for order_id, items in expected.items():
        final = items[-1]
        got = last_frame[order_id]
        assert (got["exec_id"], got["cum_qty"], got["leaves_qty"], got["avg_px"]) == (
            final["exec_id"],
            final["cum_qty"],
            final["leaves_qty"],
            final["avg_px"],
        ), f"{order_id}: the latest state, no fill's effect lost"
    # the plain client in the same burst, reading nothing, is closed
    code = await asyncio.wait_for(asyncio.to_thread(_drain_until_close, stalled), 60)
    assert code == 1013


def _stalled_sse(worker: Worker, subscription_id: str, token: str) -> socket.socket:
    """An SSE client with a tiny receive buffer that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", worker.web_port))
    sock.sendall(
        (
            f"GET /api/v1/subscriptions/{subscription_id}/events?from=latest&token={token} "
            f"HTTP/1.1\r\nHost: 127.0.0.1:{worker.web_port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 200"), response
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(60)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    return received


async def test_a_stalled_sse_client_is_ended_while_a_healthy_one_keeps_up(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    token = str(subscription["token"])
    stalled = await asyncio.to_thread(_stalled_sse, first, str(subscription["id"]), token)
    records = flows("SSESLOW", 900, 14)
    expected = [c["exec_id"] for items in expected_confirmations(records).values() for c in items]
    got: list[str] = []

    async def healthy() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as http,
            http.stream(
                "GET",
                f"{first.url}/api/v1/subscriptions/{subscription['id']}/events",
                params={"from": "latest"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"exec_id"' in line:
                    got.append(orjson.loads(line.removeprefix("data: "))["exec_id"])
                if len(got) >= len(expected):
                    return

    reader = asyncio.create_task(healthy())
    await asyncio.sleep(1.0)
    await produce(records)
    await asyncio.wait_for(reader, 120)
    assert sorted(got) == sorted(expected), "the healthy client is not held back"
    # the stalled one, reading at last what was buffered, finds its stream ended as too slow
    tail = await asyncio.wait_for(asyncio.to_thread(_read_until_closed, stalled), 90)
    assert b'event: error\ndata: {"reason": "client too slow"}' in tail
