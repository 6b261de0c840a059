"""The pipeline's consumer, as the worker configures it, against the real broker.

The join needs an order before its executions. They come from two topics, so a worker
recovering a backlog must read both at their own pace: a consumer that fills every fetch with
one topic's partitions holds the other's back, and executions whose order is still unread are
held, then, after ``EXECDIST_ORPHAN_TIMEOUT_S``, rejected as orphans.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from execdist.infra import clients
from execdist.infra.kafka_admin import create_topic
from execdist.settings import Settings
from tests.integration.conftest import BROKER, delete_topics

pytestmark = pytest.mark.integration

PARTITIONS = 4
BIG_PER_PARTITION = 100
"""Records of the busy topic per partition: 10 MiB, more than a fetch used to take of one
partition (8 MiB, under a cap of 32 MiB for all of them)."""
RECORD = b"x" * 100 * 1024


def _fill(big: str, small: str) -> None:
    producer = Producer({"bootstrap.servers": BROKER, "linger.ms": 5, "compression.type": "none"})
    for index in range(BIG_PER_PARTITION):
        for partition in range(PARTITIONS):
            producer.produce(big, RECORD, key=b"%d" % index, partition=partition)
        producer.poll(0)
    assert producer.flush(60) == 0
    # written after the whole backlog of the busy topic: a consumer that took each topic in
    # turn would read these last
    for partition in range(PARTITIONS):
        producer.produce(small, b"order", key=b"o", partition=partition)
    assert producer.flush(30) == 0


def _start_at_zero(group: str, topics: list[str]) -> None:
    """Commit offset 0 for every partition, as a worker's group has committed them: the
    consumer starts every partition at once, with no offset lookup to stagger them."""
    setup = Consumer({"bootstrap.servers": BROKER, "group.id": group})
    try:
        setup.commit(
            offsets=[TopicPartition(t, p, 0) for t in topics for p in range(PARTITIONS)],
            asynchronous=False,
        )
    finally:
        setup.close()


def _read_until_small(consumer: Consumer, small: str) -> int:
    """Records of the busy topic read before the last record of the quiet one arrived, taking
    them at a worker's pace (a few at a time, with the work in between)."""
    seen_small = 0
    big_before = 0
    deadline = time.monotonic() + 60
    while seen_small < PARTITIONS:
        assert time.monotonic() < deadline, f"only {seen_small} of the quiet topic's records"
        messages = consumer.consume(20, 0.5)
        for message in messages:
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                continue  # the end of a partition, which the engine notes: not a record
            assert error is None, error
            if message.topic() == small:
                seen_small += 1
            else:
                big_before += 1
        if messages:
            time.sleep(0.02)
    return big_before


async def test_a_busy_input_does_not_hold_back_a_quiet_one() -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings(broker=BROKER, app_id=f"execdist-fetch-{run}")
    big, small = f"execdist-test-busy-{run}", f"execdist-test-quiet-{run}"
    await create_topic(settings, big, PARTITIONS)
    await create_topic(settings, small, PARTITIONS)
    group = f"execdist-fetch-{run}"
    consumer = clients.pipeline_consumer(settings, group)
    try:
        await asyncio.to_thread(_fill, big, small)
        await asyncio.to_thread(_start_at_zero, group, [big, small])
        consumer.subscribe([big, small])
        read_first = await asyncio.to_thread(_read_until_small, consumer, small)
    finally:
        consumer.close()
        await delete_topics([big, small])
    # every fetch takes some of each partition: the quiet topic's records come with the first
    # fetches, not after most of the 40 MiB backlog of the busy one
    total = BIG_PER_PARTITION * PARTITIONS
    assert read_first <= total // 4, f"{read_first} of {total} busy records came first"
