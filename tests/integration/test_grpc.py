"""The gRPC relay (execdist.v1.Distribution/Subscribe) through two real workers: resuming
from a cursor on another worker gives no gap and no repeat; tokens and cursors are checked
like on the WebSocket relay (UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import grpc
import httpx
import orjson
import pytest

from execdist.grpc import execdist_pb2 as pb
from execdist.grpc import execdist_pb2_grpc as pb_grpc
from tests.integration.conftest import (
    ADMIN_TOKEN,
    Worker,
    read_committed,
)
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import flows, produce, subscribe, truncate, worker_pair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(tmp_path_factory, "grpc")


def grpc_port(worker: Worker) -> int:
    return worker.grpc_port


@asynccontextmanager
async def distribution(worker: Worker) -> AsyncIterator[pb_grpc.DistributionStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port(worker)}") as channel:
        yield pb_grpc.DistributionStub(channel)


def request(subscription_id: object, start: str) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(subscription_id=str(subscription_id), **{"from": start})


def bearer(token: object) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def read_grpc(
    worker: Worker,
    subscription_id: object,
    start: str,
    token: object,
    count: int,
    timeout: float = 60.0,
) -> tuple[list[pb.Confirmation], str | None]:
    """Up to ``count`` confirmations from ``start``; returns them and the last cursor."""
    got: list[pb.Confirmation] = []
    cursor = None
    async with distribution(worker) as stub:
        call = stub.Subscribe(request(subscription_id, start), metadata=bearer(token))

        async def read() -> None:
            nonlocal cursor
            async for response in call:
                if response.WhichOneof("kind") == "confirmation":
                    got.append(response.confirmation.data)
                    cursor = response.confirmation.cursor
                    if len(got) >= count:
                        return
                else:
                    assert response.WhichOneof("kind") == "heartbeat"
                    assert response.heartbeat.time.endswith("Z")

        try:
            await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            pytest.fail(f"only {len(got)} of {count} confirmations arrived")
        finally:
            call.cancel()
    return got, cursor


async def refusal(worker: Worker, req: pb.SubscribeRequest, metadata: tuple) -> grpc.StatusCode:
    async with distribution(worker) as stub:
        call = stub.Subscribe(req, metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), 15)
        return refused.value.code()


async def test_grpc_resume_across_workers_has_no_gap_and_no_repeat(workers) -> None:
    first, second = workers
    subscription = await subscribe(first)
    records = flows("GRPC", 100, 31)
    await produce(records)
    expected = {
        c["exec_id"]: c for items in expected_confirmations(records).values() for c in items
    }
    await read_committed([str(subscription["topic"])], lambda got: len(got) >= len(expected), 60)
    half = len(expected) // 2
    token = subscription["token"]
    head, cursor = await read_grpc(first, subscription["id"], "earliest", token, half)
    assert cursor is not None
    # resume on the other worker, which did not serve the first half
    tail, last = await read_grpc(second, subscription["id"], cursor, token, len(expected) - half)
    got = [c.exec_id for c in head + tail]
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(expected)
    # the fields arrive as in the JSON: decimals and times as strings, null ref_exec_id unset
    for message in head + tail:
        want = expected[message.exec_id]
        assert message.confirmation_id == message.exec_id
        assert message.order_id == want["order_id"]
        assert message.seq == want["seq"]
        assert message.exec_type == want["exec_type"]
        assert message.last_qty == want["last_qty"]
        assert message.cum_qty == want["cum_qty"]
        assert message.avg_px == want["avg_px"]
        assert message.order_status == want["order_status"]
        assert message.exec_time == want["exec_time"]
        assert message.confirmed_at.endswith("Z")
        if want["ref_exec_id"] is None:
            assert not message.HasField("ref_exec_id")
        else:
            assert message.ref_exec_id == want["ref_exec_id"]
    # nothing is left after the last cursor: the next message is a heartbeat, not a repeat
    async with distribution(first) as stub:
        call = stub.Subscribe(request(subscription["id"], str(last)), metadata=bearer(token))
        response = await asyncio.wait_for(call.read(), 15)
        call.cancel()
    assert response.WhichOneof("kind") == "heartbeat"


async def test_grpc_admin_token_and_bare_token_are_accepted(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    for metadata in (bearer(ADMIN_TOKEN), (("authorization", str(subscription["token"])),)):
        async with distribution(first) as stub:
            call = stub.Subscribe(request(subscription["id"], "latest"), metadata=metadata)
            response = await asyncio.wait_for(call.read(), 15)
            call.cancel()
        assert response.WhichOneof("kind") == "heartbeat"


async def test_grpc_refuses_other_tokens_unknown_subscriptions_and_bad_cursors(
    workers,
) -> None:
    first, second = workers
    mine = await subscribe(first)
    other = await subscribe(first)
    latest = request(mine["id"], "latest")
    assert await refusal(first, latest, bearer(other["token"])) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await refusal(second, latest, bearer("bogus-token")) == (grpc.StatusCode.UNAUTHENTICATED)
    assert await refusal(first, latest, ()) == grpc.StatusCode.UNAUTHENTICATED
    assert await refusal(first, request("no-such-id", "latest"), bearer(ADMIN_TOKEN)) == (
        grpc.StatusCode.NOT_FOUND
    )
    # subscriptions have one partition unless asked otherwise
    for bad in ("nonsense", "0:1,1:2", "0:-1", "latest,"):
        assert await refusal(first, request(mine["id"], bad), bearer(mine["token"])) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )


async def test_grpc_cursor_older_than_the_topic_is_out_of_range(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    records = flows("GEXP", 6, 2)
    await produce(records)
    total = sum(len(items) for items in expected_confirmations(records).values())
    await read_committed([str(subscription["topic"])], lambda got: len(got) >= total, 60)
    truncate(str(subscription["topic"]), 0, 3)
    async with distribution(first) as stub:
        call = stub.Subscribe(
            request(subscription["id"], "0:1"), metadata=bearer(subscription["token"])
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), 15)
    assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert orjson.loads(refused.value.details()) == {
        "type": "error",
        "code": "cursor_expired",
        "earliest": "0:3",
    }


def metric(worker: Worker, name: str, subscription_id: object) -> float:
    """One labelled sample of the worker's /metrics (0 when absent)."""
    text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    prefix = f'{name}{{subscription="{subscription_id}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.2)


async def test_a_stalled_grpc_client_is_ended_while_a_healthy_one_keeps_up(workers) -> None:
    first, _ = workers
    subscription = await subscribe(first)
    token = subscription["token"]
    records = flows("GRPCSLOW", 900, 15)
    expected = [c["exec_id"] for items in expected_confirmations(records).values() for c in items]
    # a client that never reads: no BDP probing, so its stream window stays at 64 KiB and the
    # server can send it only that much
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{grpc_port(first)}", options=[("grpc.http2.bdp_probe", 0)]
    ) as stalled_channel:
        stalled = pb_grpc.DistributionStub(stalled_channel).Subscribe(
            request(subscription["id"], "latest"), metadata=bearer(token)
        )
        await until(
            lambda: metric(first, "execdist_relay_clients", subscription["id"]) >= 1,
            30,
            "the stalled client connecting",
        )
        healthy = asyncio.create_task(
            read_grpc(first, subscription["id"], "latest", token, len(expected), timeout=120)
        )
        await until(
            lambda: metric(first, "execdist_relay_clients", subscription["id"]) >= 2,
            30,
            "the healthy client connecting",
        )
        await produce(records)
        got, _ = await healthy
        assert sorted(c.exec_id for c in got) == sorted(expected), "the healthy one kept up"
        # the server gave up on the stalled one without its reading anything: what it held
        # for it is released, and it is counted as too slow
        await until(
            lambda: metric(first, "execdist_relay_slow_clients_total", subscription["id"]) >= 1,
            60,
            "the stalled client being dropped",
        )
        await until(
            lambda: metric(first, "execdist_relay_clients", subscription["id"]) == 0,
            10,
            "no client left on the subscription",
        )
        # reading at last, it finds what fitted in its window, then the end of its stream
        received = 0
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for response in stalled:
                received += response.WhichOneof("kind") == "confirmation"
        assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ended.value.details() == "client too slow"
        assert received < len(expected)
