"""Subscriptions through two real workers: management API, auth, routing, pause, delete, restart."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.codecs import InputDecoder
from execdist.demo import FeedRecord, order_flow
from execdist.domain import Confirmation
from execdist.domain.subscriptions import Filter
from tests.integration.conftest import (
    ADMIN_TOKEN,
    REGISTRY_URL,
    Worker,
    read_committed,
)
from tests.integration.expectations import expected_confirmations
from tests.integration.helpers import send_records, worker_pair

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    yield from worker_pair(
        tmp_path_factory,
        "subs",
        extra_topics=(topics.SUBSCRIPTIONS, topics.WORKERS, topics.SUBSCRIPTION_AUDIT),
    )


async def create(worker: Worker, body: dict[str, object]) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN) as http:
        response = await http.post("/api/v1/subscriptions", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def matching(expected: dict[str, list[dict]], flt: Filter) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for order_id, items in expected.items():
        for item in items:
            confirmation = Confirmation.from_dict({**item, "confirmed_at": item["exec_time"]})
            if flt.matches(confirmation):
                result.setdefault(order_id, []).append(str(item["exec_id"]))
    return result


async def topic_contents(topic: str, count: int, timeout: float = 60.0) -> dict[str, list[str]]:
    records = await read_committed([topic], lambda got: len(got) >= count, timeout, settle=1.5)
    result: dict[str, list[str]] = {}
    for record in records:
        body = orjson.loads(record.value)
        assert record.key == body["order_id"].encode()
        result.setdefault(body["order_id"], []).append(body["exec_id"])
    return result


async def test_each_subscriber_gets_exactly_its_matches_once_in_order(workers, producer) -> None:
    first, second = workers
    by_account = await create(
        first,
        {
            "name": f"desk-{uuid.uuid4().hex[:6]}",
            "filter": {"accounts": ["ACC-EQ-01", "ACC-HF-07"]},
        },
    )
    corrections = await create(
        second,
        {"name": f"corr-{uuid.uuid4().hex[:6]}", "filter": {"exec_types": ["CORRECT", "BUST"]}},
    )
    big_sells = await create(
        second,
        {
            "name": f"big-{uuid.uuid4().hex[:6]}",
            "filter": {"sides": ["SELL", "SELL_SHORT"], "min_qty": "300"},
        },
    )
    everything = await create(first, {"name": f"all-{uuid.uuid4().hex[:6]}"})
    await asyncio.sleep(1.0)  # in force on every worker within one second

    rng = random.Random(99)
    records = [r for n in range(150) for r in order_flow(rng, f"SUB-{n:03d}", allow_amend=False)]
    await send_records(producer, records)
    expected = expected_confirmations(records)

    for subscription in (by_account, corrections, big_sells, everything):
        flt = Filter.parse(subscription["filter"])
        want = matching(expected, flt)
        assert want, f"the feed must give {subscription['name']} something to receive"
        got = await topic_contents(str(subscription["topic"]), sum(map(len, want.values())))
        assert got == want, subscription["name"]

    # the status view sums what every worker delivered
    await asyncio.sleep(2.5)
    async with httpx.AsyncClient(base_url=second.url, headers=ADMIN) as http:
        status = (await http.get(f"/api/v1/subscriptions/{everything['id']}/status")).json()
        cluster = (await http.get("/api/v1/status")).json()
    assert status["delivered"] == sum(map(len, expected.values()))
    assert status["latency_ms"]["p99"] is not None
    assert status["last_delivery_at"] is not None
    assert {w["url"] for w in cluster["workers"]} == {first.url, second.url}
    assert sorted(p for w in cluster["workers"] for p in w["partitions"]) == [0, 1, 2, 3]
    assert cluster["subscriptions"]["active"] >= 4


async def test_avro_subscription_gets_confluent_framed_records(workers, producer) -> None:
    first, _ = workers
    subscription = await create(
        first,
        {
            "name": f"avro-{uuid.uuid4().hex[:6]}",
            "format": "avro",
            "filter": {"symbols": ["AAPL", "MSFT"]},
        },
    )
    await asyncio.sleep(1.0)
    rng = random.Random(5)
    records = [r for n in range(60) for r in order_flow(rng, f"AV-{n:03d}", allow_amend=False)]
    await send_records(producer, records)
    want = matching(expected_confirmations(records), Filter.parse(subscription["filter"]))
    count = sum(map(len, want.values()))
    out = await read_committed(
        [str(subscription["topic"])], lambda got: len(got) >= count, 60, settle=1.0
    )
    decoder = InputDecoder(AsyncSchemaRegistryClient(url=REGISTRY_URL))
    got: dict[str, list[str]] = {}
    for record in out:
        assert record.value[0] == 0  # Confluent wire format
        body = await decoder.decode(record.value)
        assert body["symbol"] in ("AAPL", "MSFT")
        got.setdefault(str(body["order_id"]), []).append(str(body["exec_id"]))
    assert got == want


async def test_pause_resume_filter_change_and_delete(workers, producer) -> None:
    first, second = workers
    subscription = await create(
        first, {"name": f"life-{uuid.uuid4().hex[:6]}", "filter": {"accounts": ["ACC-PB-11"]}}
    )
    sid, topic = subscription["id"], str(subscription["topic"])

    def flows(prefix: str, seed: int) -> list[FeedRecord]:
        rng = random.Random(seed)
        return [
            r for n in range(40) for r in order_flow(rng, f"{prefix}-{n:03d}", allow_amend=False)
        ]

    async with httpx.AsyncClient(base_url=second.url, headers=ADMIN) as http:
        paused = await http.patch(f"/api/v1/subscriptions/{sid}", json={"status": "PAUSED"})
        assert paused.status_code == 200
        assert paused.json()["status"] == "PAUSED"
        assert paused.json()["version"] == 2
    await asyncio.sleep(1.0)
    while_paused = flows("PAUSED", 1)
    await send_records(producer, while_paused)
    # every confirmation of the paused period is committed before the resume (partitions are
    # processed independently: the last record's order may be confirmed before the others)
    paused_keys = {r.key for r in while_paused}
    paused_total = sum(map(len, expected_confirmations(while_paused).values()))
    await read_committed(
        [topics.CONFIRMATIONS],
        lambda got: sum(r.key in paused_keys for r in got) >= paused_total,
        60,
    )

    async with httpx.AsyncClient(base_url=first.url, headers=ADMIN) as http:
        resumed = await http.patch(
            f"/api/v1/subscriptions/{sid}",
            json={"status": "ACTIVE", "filter": {"accounts": ["ACC-EQ-02"]}},
        )
        assert resumed.status_code == 200
        assert resumed.json()["filter"]["accounts"] == ["ACC-EQ-02"]
    await asyncio.sleep(1.0)
    after_resume = flows("RESUMED", 2)
    await send_records(producer, after_resume)
    want = matching(expected_confirmations(after_resume), Filter(accounts=frozenset({"ACC-EQ-02"})))
    got = await topic_contents(topic, sum(map(len, want.values())))
    assert got == want  # nothing from the paused period, nothing for the old filter

    async with httpx.AsyncClient(base_url=second.url, headers=ADMIN) as http:
        assert (await http.delete(f"/api/v1/subscriptions/{sid}")).status_code == 204
        assert (await http.get(f"/api/v1/subscriptions/{sid}")).status_code == 404
    await asyncio.sleep(1.0)
    after_delete = flows("DELETED", 3)
    await send_records(producer, after_delete)
    await read_committed(
        [topics.CONFIRMATIONS], lambda got: any(r.key == after_delete[-1].key for r in got), 60
    )
    assert await topic_contents(topic, 0) == got


async def test_management_api_validation_pagination_and_conflicts(workers) -> None:
    first, _ = workers
    async with httpx.AsyncClient(base_url=first.url, headers=ADMIN) as http:
        bad = await http.post(
            "/api/v1/subscriptions", json={"name": "x", "filter": {"sides": ["HOLD"]}}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["field"].startswith("filter.sides")
        assert "BUY" in bad.json()["error"]["message"]
        not_json = await http.post("/api/v1/subscriptions", content=b"{nope")
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == "invalid"
        name = f"dup-{uuid.uuid4().hex[:6]}"
        assert (await http.post("/api/v1/subscriptions", json={"name": name})).status_code == 201
        duplicate = await http.post("/api/v1/subscriptions", json={"name": name})
        assert duplicate.status_code == 409
        assert duplicate.json()["error"]["field"] == "name"
        for n in range(3):
            await http.post(
                "/api/v1/subscriptions", json={"name": f"page-{uuid.uuid4().hex[:6]}-{n}"}
            )
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/v1/subscriptions", params=params)).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        everything = (await http.get("/api/v1/subscriptions", params={"limit": "500"})).json()
        assert seen == [item["id"] for item in everything["items"]]
        assert len(seen) == len(set(seen)) >= 4
        assert (await http.get("/api/v1/subscriptions", params={"limit": "0"})).status_code == 400
        assert (
            await http.get("/api/v1/subscriptions", params={"status": "GONE"})
        ).status_code == 400


async def test_subscriptions_survive_a_restart_of_every_worker(workers, producer) -> None:
    subscription = await create(
        workers[0], {"name": f"durable-{uuid.uuid4().hex[:6]}", "filter": {"venues": ["XNAS"]}}
    )
    for worker in workers:
        worker.stop()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    for worker in workers:
        async with httpx.AsyncClient(base_url=worker.url, headers=ADMIN) as http:
            again = (await http.get(f"/api/v1/subscriptions/{subscription['id']}")).json()
        assert again["name"] == subscription["name"]
    rng = random.Random(8)
    records = [r for n in range(30) for r in order_flow(rng, f"RS-{n:03d}", allow_amend=False)]
    await send_records(producer, records)
    want = matching(expected_confirmations(records), Filter(venues=frozenset({"XNAS"})))
    assert await topic_contents(str(subscription["topic"]), sum(map(len, want.values()))) == want
