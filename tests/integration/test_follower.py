"""How far a followed topic goes, asked on a connection of its own: the last stable offset for
a read_committed follower (an open transaction is not waited for), the high watermark for
one that reads everything."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from execdist.services.follower import EndOffsets, follow_from_start
from execdist.settings import Settings
from tests.integration.conftest import BROKER


async def settles_at(ends: EndOffsets, tp: TopicPartition, expected: int) -> int:
    """The end offset once it is ``expected`` (the commit markers are written after the commit
    returns), or as it is after 10 s."""
    deadline = time.monotonic() + 10
    while (end := await ends.of(tp)) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return end


@pytest.mark.asyncio
async def test_end_offsets_of_a_followed_topic_with_a_transaction_open_and_committed() -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"execdist-test-follow-{run}"
    settings = Settings(broker=BROKER, app_id=f"execdist-follow-{run}")
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, transactional_id=f"follow-{run}")
    committed, uncommitted = (
        EndOffsets(settings, read_committed=True),
        EndOffsets(settings, read_committed=False),
    )
    await producer.start()
    await committed.start()
    await uncommitted.start()
    # a follower fetching meanwhile, as the subscription store's and the audit's do
    follower, _ = await follow_from_start(settings, topic, read_committed=True)
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"first", key=b"k")
        assert await settles_at(committed, tp, 2) == 2  # the record and its commit marker

        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"second", key=b"k")
        assert await committed.of(tp) == 2, "the open transaction is not counted"
        assert await uncommitted.of(tp) == 3
        await producer.commit_transaction()
        assert await settles_at(committed, tp, 4) == 4

        values: list[bytes | None] = []
        while len(values) < 2:
            read = await follower.getmany(tp, timeout_ms=10_000)
            assert read, "the follower read nothing in 10 s"
            values += [record.value for record in read.get(tp, [])]
        assert values == [b"first", b"second"]
    finally:
        await follower.stop()
        await committed.stop()
        await uncommitted.stop()
        await producer.stop()
