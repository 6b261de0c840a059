"""Helpers shared by the integration tests: a pair of workers, subscriptions, input flows."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from execdist.demo import FeedRecord, order_flow
from tests.integration.conftest import (
    ADMIN_TOKEN,
    BROKER,
    CONTRACT_TOPICS,
    Worker,
    delete_topics,
    start_all,
)


def worker_pair(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    extra_env: dict[str, str] | None = None,
    extra_topics: tuple[str, ...] = (),
) -> Iterator[list[Worker]]:
    """Two ready workers of one fresh app id, on fresh topics; stopped afterwards."""
    asyncio.run(delete_topics([*CONTRACT_TOPICS, *extra_topics]))
    tmp: Path = tmp_path_factory.mktemp(name)
    app_id = f"execdist-{name}-{uuid.uuid4().hex[:8]}"
    pair = [
        Worker(
            app_id=app_id,
            data_dir=tmp / f"data-{i}",
            log_path=tmp / f"worker-{i}.log",
            extra_env=dict(extra_env or {}),
        )
        for i in range(2)
    ]
    for worker in pair:
        worker.peers = pair
    start_all(pair)
    yield pair
    for worker in pair:
        worker.stop()


async def subscribe(worker: Worker, **filter_: object) -> dict[str, object]:
    """Create a subscription (admin token) and wait until every worker has it in force."""
    async with httpx.AsyncClient(
        base_url=worker.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as http:
        response = await http.post(
            "/api/v1/subscriptions",
            json={"name": f"test-{uuid.uuid4().hex[:8]}", "filter": filter_},
        )
    assert response.status_code == 201, response.text
    await asyncio.sleep(1.0)  # in force on every worker within a second
    return dict(response.json())


async def send_records(producer: AIOKafkaProducer, records: list[FeedRecord]) -> None:
    """Send ``records`` in order with ``producer`` and wait until the broker has them."""
    for record in records:
        await producer.send(record.topic, record.value, key=record.key)
    await producer.flush()


async def produce(records: list[FeedRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, enable_idempotence=True)
    await producer.start()
    try:
        for record in records:
            await producer.send(record.topic, record.value, key=record.key)
        await producer.flush()
    finally:
        await producer.stop()


def flows(prefix: str, orders: int, seed: int) -> list[FeedRecord]:
    """``orders`` order flows (no amendments), deterministic for ``seed``."""
    rng = random.Random(seed)
    return [
        r for n in range(orders) for r in order_flow(rng, f"{prefix}-{n:04d}", allow_amend=False)
    ]


def truncate(topic: str, partition: int, before: int) -> None:
    """Delete the records of ``topic``'s ``partition`` before offset ``before``, as retention
    would."""
    admin = AdminClient({"bootstrap.servers": BROKER})
    futures = admin.delete_records([TopicPartition(topic, partition, before)])
    for future in futures.values():
        future.result(30)
