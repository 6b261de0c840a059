"""Snapshot, then live, on the real broker, for WebSocket, SSE and gRPC at once: while records
keep being produced, each client gets the latest record of every order as of its snapshot,
then every later record once, in sub_seq order, with no gap and no repeat; clients on both
workers of a pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
import grpc
import httpx
import orjson
import pytest

from execdist.grpc import execdist_pb2 as pb
from execdist.grpc import execdist_pb2_grpc as pb_grpc
from tests.integration.conftest import Worker, read_committed
from tests.integration.helpers import flows, produce, subscribe, worker_pair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(tmp_path_factory, "snapshot")


@dataclass
class Seen:
    """What one client received."""

    snapshot: list[tuple[int, str]] = field(default_factory=list)
    """(sub_seq, order_id) of each snapshot record."""
    end: dict[str, object] | None = None
    live: list[int] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    """Set once production ended: the last sub_seq the client must reach."""

    def add_live(self, sub_seq: int, data_sub_seq: int) -> None:
        assert self.end is not None, "a live record before snapshot_end"
        assert sub_seq == data_sub_seq
        self.live.append(sub_seq)

    def done(self) -> bool:
        return bool(self.target and self.live and self.live[-1] >= self.target[0])


async def websocket_client(worker: Worker, subscription: dict[str, object], seen: Seen) -> None:
    url = (
        f"ws://127.0.0.1:{worker.web_port}/api/v1/subscriptions/{subscription['id']}/stream"
        f"?from=snapshot&token={subscription['token']}"
    )
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async for message in ws:
            frame = orjson.loads(message.data)
            if frame["type"] == "snapshot":
                assert seen.end is None
                seen.snapshot.append((frame["sub_seq"], frame["data"]["order_id"]))
                assert frame["sub_seq"] == frame["data"]["sub_seq"]
            elif frame["type"] == "snapshot_end":
                seen.end = frame
            elif frame["type"] == "confirmation":
                seen.add_live(frame["sub_seq"], frame["data"]["sub_seq"])
            if seen.done():
                return


async def sse_client(worker: Worker, subscription: dict[str, object], seen: Seen) -> None:
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream(
            "GET",
            f"{worker.url}/api/v1/subscriptions/{subscription['id']}/events",
            params={"from": "snapshot"},
            headers={"Authorization": f"Bearer {subscription['token']}"},
        ) as response,
    ):
        assert response.status_code == 200
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = orjson.loads(line.removeprefix("data: "))
                if event == "snapshot":
                    assert seen.end is None
                    seen.snapshot.append((data["sub_seq"], data["order_id"]))
                elif event == "snapshot_end":
                    seen.end = data
                elif event == "confirmation":
                    seen.add_live(data["sub_seq"], data["sub_seq"])
            if seen.done():
                return


async def grpc_client(worker: Worker, subscription: dict[str, object], seen: Seen) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as channel:
        stub = pb_grpc.DistributionStub(channel)
        request = pb.SubscribeRequest(subscription_id=str(subscription["id"]))
        setattr(request, "from", "snapshot")
        call = stub.Subscribe(
            request, metadata=(("authorization", f"Bearer {subscription['token']}"),)
        )
        try:
            async for response in call:
                kind = response.WhichOneof("kind")
                if kind == "snapshot":
                    assert seen.end is None
                    seen.snapshot.append(
                        (response.snapshot.sub_seq, response.snapshot.data.order_id)
                    )
                    assert response.snapshot.data.sub_seq == response.snapshot.sub_seq
                elif kind == "snapshot_end":
                    end = response.snapshot_end
                    seen.end = {"cursor": end.cursor, "sub_seq": end.sub_seq, "orders": end.orders}
                elif kind == "confirmation":
                    data = response.confirmation.data
                    seen.add_live(data.sub_seq, data.sub_seq)
                if seen.done():
                    return
        finally:
            call.cancel()


async def test_snapshot_then_live_has_no_gap_and_no_repeat_on_every_transport(workers) -> None:
    first, second = workers
    subscription = await subscribe(first)
    before = flows("SNAPA", 40, 21)
    await produce(before)
    await read_committed([str(subscription["topic"])], lambda got: len(got) >= 40, 60)

    clients = {
        "websocket on the first worker": (websocket_client, first, Seen()),
        "SSE on the second worker": (sse_client, second, Seen()),
        "gRPC on the second worker": (grpc_client, second, Seen()),
        "websocket on the second worker": (websocket_client, second, Seen()),
    }
    # records keep coming while the snapshots are taken
    during = flows("SNAPB", 60, 22)
    producing = asyncio.create_task(_trickle(during))
    await asyncio.sleep(0.2)
    tasks = {
        name: asyncio.create_task(client(worker, subscription, seen))
        for name, (client, worker, seen) in clients.items()
    }
    await producing

    topic = await read_committed(
        [str(subscription["topic"])],
        lambda got: any(orjson.loads(r.value)["exec_id"] == _last_exec(during) for r in got),
        timeout=90,
        settle=1.0,
    )
    by_seq = {}
    for record in topic:
        body = orjson.loads(record.value)
        by_seq[body["sub_seq"]] = body["order_id"]
    total = max(by_seq)
    assert sorted(by_seq) == list(range(1, total + 1))
    for _, _, seen in clients.values():
        seen.target.append(total)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks.values()), 60)
    finally:
        for task in tasks.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    for name, (_, _, seen) in clients.items():
        assert seen.end is not None, name
        taken_at = int(seen.end["sub_seq"])  # type: ignore[call-overload]
        latest: dict[str, int] = {}
        for sub_seq in range(1, taken_at + 1):
            latest[by_seq[sub_seq]] = sub_seq
        assert sorted(seen.snapshot) == sorted((s, o) for o, s in latest.items()), name
        assert [s for s, _ in seen.snapshot] == sorted(s for s, _ in seen.snapshot), name
        assert seen.end["orders"] == len(latest), name
        assert seen.live == list(range(taken_at + 1, total + 1)), f"{name}: no gap, no repeat"
    assert any(seen.live for _, _, seen in clients.values()), "some records came live"


def _last_exec(records: list) -> str:
    return str(orjson.loads(records[-1].value)["exec_id"])


async def _trickle(records: list) -> None:
    """Produce ``records`` in small steps over a couple of seconds."""
    for start in range(0, len(records), 10):
        await produce(records[start : start + 10])
        await asyncio.sleep(0.05)
