"""Exactly once through a crash: two workers, one killed with SIGKILL mid-stream and restarted.

A read_committed consumer must then find every expected confirmation exactly once, in seq order
per order, and both workers must give the same answers to the state queries.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import httpx
import orjson
import pytest

from execdist import topics
from execdist.demo import order_flow
from tests.integration.conftest import ADMIN_TOKEN, read_committed
from tests.integration.expectations import expected_confirmations

pytestmark = pytest.mark.integration

ORDERS = 900


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(cluster, producer) -> None:
    worker_a = cluster()
    worker_b = cluster()
    rng = random.Random(2024)
    records = [r for n in range(ORDERS) for r in order_flow(rng, f"CR-{n:04d}", allow_amend=False)]
    expected = expected_confirmations(records)
    total = sum(len(items) for items in expected.values())
    executions = sum(1 for r in records if r.topic == topics.EXECUTIONS)
    assert executions >= 2000

    kill_at = len(records) // 3
    for index, record in enumerate(records):
        await producer.send(record.topic, record.value, key=record.key)
        if index % 200 == 0:
            await asyncio.sleep(0.05)  # a steady stream, not one burst
        if index == kill_at:
            await producer.flush()
            await asyncio.sleep(1.0)  # let the worker be mid-transaction
            worker_a.kill()
            worker_a.start()
    await producer.flush()
    worker_a.wait_ready(120)

    started = time.monotonic()
    out = await read_committed(
        [topics.CONFIRMATIONS], lambda got: len(got) >= total, timeout=240, settle=3
    )
    drained_s = time.monotonic() - started

    seen = Counter(orjson.loads(r.value)["exec_id"] for r in out)
    duplicates = sum(count - 1 for count in seen.values() if count > 1)
    expected_ids = {c["exec_id"] for items in expected.values() for c in items}
    lost = len(expected_ids - set(seen))
    print(
        f"\ncrash test: {len(records)} inputs, {executions} executions, "
        f"{len(out)} confirmations read, expected {total}, lost {lost}, "
        f"duplicated {duplicates}, drained {drained_s:.1f}s after the last input"
    )
    if lost:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        states = {}
        for exec_id in sorted(expected_ids - set(seen))[:5]:
            order_id = exec_id.rsplit("-E", 1)[0]
            async with httpx.AsyncClient(base_url=worker_b.url, headers=headers) as http:
                states[exec_id] = (await http.get(f"/api/v1/orders/{order_id}")).json()
        pytest.fail(f"lost {lost} confirmations; state of their orders: {states}")
    assert duplicates == 0
    per_order: dict[str, list[int]] = {}
    for record in out:
        body = orjson.loads(record.value)
        per_order.setdefault(body["order_id"], []).append(body["seq"])
    for order_id, items in expected.items():
        assert per_order[order_id] == [c["seq"] for c in items], order_id

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for order_id in list(expected)[:: ORDERS // 20]:
        answers = []
        for worker in (worker_a, worker_b):
            async with httpx.AsyncClient(base_url=worker.url, headers=headers, timeout=10) as http:
                response = await http.get(f"/api/v1/orders/{order_id}")
                assert response.status_code == 200, response.text
                answers.append(response.json())
        assert answers[0] == answers[1]
        assert answers[0]["cum_qty"] == expected[order_id][-1]["cum_qty"]
