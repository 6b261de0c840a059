"""WebSocket clients that drop or stall while the stream runs, and resume from their last cursor.

Three clients follow one subscription through two workers:

- a *dropper* closes its connection every few hundred frames and reconnects, with the last
  cursor it saw, to the other worker;
- a *staller* stops reading for several seconds at a time (its socket fills up; the relay
  closes it as too slow, 1013) and then resumes from its last cursor;
- a *steady* client reads without interruption.

Each must end up with exactly the subscription's confirmations: none lost, none repeated, in seq
order per order, and none that was never committed (an aborted read).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest

from execdist import topics
from tests.integration.conftest import Worker
from tests.integration.helpers import subscribe
from tests.reliability.support import QUIET
from tests.reliability.verifier import Feed, OutputTail, Schedule, log, stream, verify

pytestmark = pytest.mark.integration

ACCOUNTS = ("ACC-EQ-01", "ACC-EQ-02")


@dataclass
class Client:
    """One WebSocket client's session log."""

    name: str
    frames: list[dict] = field(default_factory=list)
    cursor: str = "earliest"
    connections: int = 0
    drops: int = 0
    stalls: int = 0
    closed_by_server: Counter[int] = field(default_factory=Counter)
    resume_s: list[float] = field(default_factory=list)
    """Per reconnect: seconds from opening the new connection to its first frame."""


async def follow(
    client: Client,
    workers: list[Worker],
    subscription: dict[str, object],
    expected: int,
    schedule: Schedule,
    drop_every: int = 0,
    stall_every: int = 0,
    stall_s: float = 6.0,
    deadline_s: float = 400.0,
) -> None:
    """Read the subscription until ``expected`` frames arrived, dropping or stalling on plan."""
    rng = random.Random(client.name)
    deadline = time.monotonic() + deadline_s
    # a staller's socket has a tiny receive buffer, so that not reading is felt by the relay
    connector = aiohttp.TCPConnector(socket_factory=small_buffer_socket) if stall_every else None
    async with aiohttp.ClientSession(connector=connector) as session:
        while len(client.frames) < expected and time.monotonic() < deadline:
            worker = workers[client.connections % len(workers)]
            client.connections += 1
            url = (
                f"ws://127.0.0.1:{worker.web_port}/api/v1/subscriptions/{subscription['id']}"
                f"/stream?from={client.cursor}&token={subscription['token']}"
            )
            budget = rng.randrange(drop_every // 2, drop_every * 3 // 2) if drop_every else 0
            reconnecting = time.monotonic() if client.connections > 1 else None
            try:
                async with session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
                    read = 0
                    while len(client.frames) < expected:
                        message = await ws.receive(timeout=30)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            if ws.close_code is not None:
                                client.closed_by_server[ws.close_code] += 1
                            break
                        frame = orjson.loads(message.data)
                        if frame["type"] != "confirmation":
                            continue
                        client.frames.append(frame["data"])
                        client.cursor = frame["cursor"]
                        if reconnecting is not None:
                            client.resume_s.append(time.monotonic() - reconnecting)
                            reconnecting = None
                        read += 1
                        if budget and read >= budget:
                            client.drops += 1
                            schedule.mark(f"{client.name}: drops its connection", fault=False)
                            break
                        if stall_every and read % stall_every == 0:
                            client.stalls += 1
                            schedule.mark(
                                f"{client.name}: stops reading for {stall_s:.0f}s", fault=False
                            )
                            await asyncio.sleep(stall_s)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log(f"{client.name}: connection ended with {exc!r}; resuming")
                await asyncio.sleep(0.5)


def small_buffer_socket(addr_info: tuple) -> socket.socket:  # type: ignore[type-arg]
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def check_client(client: Client, wanted: dict[str, list[str]], committed: set[str]) -> dict:
    ids = [str(f["exec_id"]) for f in client.frames]
    counts = Counter(ids)
    want = {e for items in wanted.values() for e in items}
    last: dict[str, int] = {}
    out_of_order = 0
    for frame in client.frames:
        order_id, seq = str(frame["order_id"]), int(frame["seq"])
        if seq < last.get(order_id, 0):
            out_of_order += 1
        last[order_id] = max(seq, last.get(order_id, 0))
    return {
        "frames": len(ids),
        "lost": len(want - set(counts)),
        "duplicated": sum(n - 1 for n in counts.values() if n > 1),
        "out_of_order": out_of_order,
        "aborted_reads": len(set(counts) - committed),
        "connections": client.connections,
        "drops": client.drops,
        "stalls": client.stalls,
        "closed_by_server": dict(client.closed_by_server),
        "max_resume_s": round(max(client.resume_s, default=0.0), 2),
    }


async def test_websocket_clients_that_drop_or_stall_resume_without_gap_or_repeat(cluster) -> None:
    env = {**QUIET, "EXECDIST_RELAY_CLIENT_QUEUE": "200"}
    workers = [cluster(**env), cluster(**env)]
    feed = Feed.seeded("WSR", seed=11)
    subscription = await subscribe(workers[0], accounts=list(ACCOUNTS))
    sub_topic = str(subscription["topic"])
    wanted = feed.matching(lambda c: c["account"] in ACCOUNTS)
    total = sum(len(v) for v in wanted.values())
    tail = await OutputTail([topics.CONFIRMATIONS, sub_topic]).start()
    schedule = Schedule()
    clients = {
        "dropper": Client("dropper"),
        "staller": Client("staller"),
        "steady": Client("steady"),
    }
    plans = {
        "dropper": {"drop_every": 600},
        # ~140 frames/s reach this subscription: a 30 s stall (~4,200 frames) is well past its
        # queue (2,000 frames) and the socket buffers (a few hundred), whatever the bursts
        "staller": {"stall_every": 2500, "stall_s": 30.0},
        "steady": {},
    }
    readers = [
        asyncio.create_task(follow(clients[name], workers, subscription, total, schedule, **plan))
        for name, plan in plans.items()
    ]
    await stream(feed, schedule=schedule)
    verdict = await verify("websocket drop/stall/resume", feed, tail, schedule, {sub_topic: wanted})
    await asyncio.wait_for(asyncio.gather(*readers), 300)
    committed = {r.exec_id for r in tail.of(sub_topic)}
    results = {name: check_client(c, wanted, committed) for name, c in clients.items()}
    for name, result in results.items():
        verdict.notes.append(f"{name}: {result}")
    verdict.record()
    verdict.assert_clean()
    for name, result in results.items():
        assert (result["lost"], result["duplicated"], result["out_of_order"]) == (0, 0, 0), name
        assert result["aborted_reads"] == 0, name
    assert results["dropper"]["drops"] >= 3
    assert results["staller"]["stalls"] >= 2
    # not reading for 30 s fills every buffer on the way: the relay closes such a client
    assert results["staller"]["closed_by_server"].get(1013, 0) >= 1
