"""Through the real broker: inputs produced to Kafka, a worker process, outputs read back."""

from __future__ import annotations

import random

import httpx
import orjson
import pytest

from execdist import topics
from execdist.demo import order_flow
from tests.integration.conftest import ADMIN_TOKEN, read_committed
from tests.integration.expectations import actual_confirmations, expected_confirmations

pytestmark = pytest.mark.integration


async def test_confirmations_flow_end_to_end(cluster, producer) -> None:
    worker = cluster()
    rng = random.Random(11)
    records = [r for n in range(40) for r in order_flow(rng, f"E2E-{n:03d}", allow_amend=False)]
    for record in records:
        await producer.send(record.topic, record.value, key=record.key)
    await producer.flush()
    expected = expected_confirmations(records)
    total = sum(len(items) for items in expected.values())

    out = await read_committed([topics.CONFIRMATIONS], lambda got: len(got) >= total)

    assert actual_confirmations([r.value for r in out]) == expected
    assert all(r.key == orjson.loads(r.value)["order_id"].encode() for r in out)

    order_id = next(iter(expected))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=worker.url, headers=headers) as http:
        order = (await http.get(f"/api/v1/orders/{order_id}")).json()
        last = expected[order_id][-1]
        assert order["cum_qty"] == last["cum_qty"]
        assert order["avg_px"] == last["avg_px"]
        assert order["last_seq"] == last["seq"]
        history = (await http.get(f"/api/v1/orders/{order_id}/confirmations")).json()
        assert [c["exec_id"] for c in history["items"]] == [
            c["exec_id"] for c in expected[order_id]
        ]
        missing = await http.get("/api/v1/orders/NO-SUCH-ORDER")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        unauthorized = await http.get(f"/api/v1/orders/{order_id}", headers={"Authorization": ""})
        assert unauthorized.status_code == 401


async def test_undecodable_record_goes_to_dlq_and_worker_keeps_going(cluster, producer) -> None:
    cluster()
    await producer.send(topics.EXECUTIONS, b"\xff\xfe not json", key=b"BAD-1")
    rng = random.Random(3)
    records = list(order_flow(rng, "AFTER-BAD-1", allow_amend=False))
    for record in records:
        await producer.send(record.topic, record.value, key=record.key)
    await producer.flush()
    expected = expected_confirmations(records)["AFTER-BAD-1"]

    dlq = await read_committed([topics.DLQ], lambda got: len(got) >= 1)
    assert dlq[0].key == b"BAD-1"
    assert dlq[0].value == b"\xff\xfe not json"
    headers = dict(dlq[0].headers)
    assert headers["error.reason"] == b"DECODE_ERROR"
    assert headers["error.topic"] == b"executions"
    assert headers["error.offset"] == b"0"
    assert headers["error.message"]

    out = await read_committed([topics.CONFIRMATIONS], lambda got: len(got) >= len(expected))
    assert actual_confirmations([r.value for r in out])["AFTER-BAD-1"] == expected
