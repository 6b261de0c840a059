"""Order state expires after the order retention while input keeps flowing.

Order ids usually grow with time, so new keys sort after old ones: the expiry sweep has to go
round each partition again from its first key rather than wait at the end for the newest orders.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import orjson
import rocksdict
from aiokafka import AIOKafkaProducer

from execdist import topics
from execdist.tables.declarations import HISTORY, history_prefix
from tests.integration.conftest import ADMIN_TOKEN, Worker
from tests.integration.test_guarantees import execution, order

RETENTION_S = 2.0
RATE = 40  # orders a second, each with one fill: several new keys per partition and tick
STREAM_S = 16.0


async def stream_orders(producer: AIOKafkaProducer, ids: list[str]) -> None:
    started = time.monotonic()
    for index, order_id in enumerate(ids):
        delay = started + index / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        key = order_id.encode()
        await producer.send(topics.ORDERS, orjson.dumps(order(order_id, quantity="100")), key=key)
        await producer.send(topics.EXECUTIONS, orjson.dumps(execution(order_id, 1)), key=key)
    await producer.flush()


async def status_of(http: httpx.AsyncClient, order_id: str) -> int:
    while True:
        response = await http.get(f"/api/v1/orders/{order_id}")
        if response.status_code != 503:  # 503: the worker is still taking its partitions
            return response.status_code
        await asyncio.sleep(0.2)


async def test_finished_orders_expire_while_new_ones_keep_arriving(
    cluster, producer: AIOKafkaProducer
) -> None:
    worker: Worker = cluster(
        EXECDIST_ORDER_RETENTION_S=str(RETENTION_S),
        EXECDIST_TICK_INTERVAL_S="1",
        EXECDIST_ORPHAN_TIMEOUT_S="600",
    )
    run = uuid.uuid4().hex[:8]
    ids = [f"R-{run}-{n:05d}" for n in range(int(RATE * STREAM_S))]
    first = ids[:20]
    # an execution whose order never comes is held, and held state is never expired
    orphan = f"R-{run}-00000-orphan"
    await producer.send_and_wait(
        topics.EXECUTIONS, orjson.dumps(execution(orphan, 1)), key=orphan.encode()
    )
    feeding = asyncio.create_task(stream_orders(producer, ids))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=10) as http:
        assert await status_of(http, first[0]) in (200, 404)
        seen_alive = False
        expired_while_streaming = False
        while not feeding.done():
            statuses = [await status_of(http, order_id) for order_id in first]
            seen_alive = seen_alive or 200 in statuses
            if seen_alive and set(statuses) == {404}:
                expired_while_streaming = True
                break
            await asyncio.sleep(0.5)
        assert seen_alive, "the first orders were never stored"
        assert expired_while_streaming, (
            f"the first orders did not expire within {STREAM_S:.0f} s of a steady stream "
            f"(retention {RETENTION_S} s)"
        )
        await feeding
        held = await http.get(f"/api/v1/orders/{orphan}")
        assert held.status_code == 200, held.text
        assert [h["exec_id"] for h in held.json()["held_executions"]] == [f"{orphan}-X1"]
        metrics = (await http.get("/metrics")).text
    expired = [
        line for line in metrics.splitlines() if line.startswith("execdist_expired_orders_total ")
    ]
    assert expired and float(expired[0].split()[1]) >= len(first)

    # their confirmation history went with them
    worker.stop()
    left = [
        key
        for key in history_keys(worker.data_dir)
        if any(key.startswith(history_prefix(order_id)) for order_id in first)
    ]
    assert left == []


def history_keys(data_dir: Path) -> list[bytes]:
    keys: list[bytes] = []
    paths = sorted(data_dir.glob(f"*/tables/{HISTORY}-*.db"))
    assert paths, "the worker's history tables"
    for path in paths:
        db = rocksdict.Rdict(
            str(path),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            keys.extend(bytes(key) for key in db.keys())  # noqa: SIM118 - Rdict iterates items
        finally:
            db.close()
    return keys
