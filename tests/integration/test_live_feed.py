"""The relay's shared consumer (:mod:`execdist.relay.live_feed`) on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Producer

from execdist.infra.kafka_admin import create_topic
from execdist.relay import live_feed
from execdist.relay.live_feed import LiveFeed, LiveRecord
from execdist.settings import Settings
from tests.integration.conftest import BROKER, delete_topics

POLL_WAIT_S = 5.0
"""The feed's longest poll for these tests: far above what a record may take to arrive."""


async def test_a_record_is_handed_over_as_it_arrives_not_after_the_poll_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poll hands over what has arrived at once: it does not hold a record back until it has
    a full batch or its wait has passed (which would add up to the whole wait to every
    record's latency)."""
    monkeypatch.setattr(live_feed, "POLL_WAIT_S", POLL_WAIT_S)
    run = uuid.uuid4().hex[:8]
    settings = Settings(broker=BROKER, app_id=f"execdist-feed-{run}")
    topic = f"execdist-test-feed-{run}"
    await create_topic(settings, topic, 2)
    feed = LiveFeed(settings)
    received: list[tuple[float, LiveRecord]] = []
    arrived = asyncio.Event()

    def receive(records: list[LiveRecord]) -> None:
        now = time.monotonic()
        received.extend((now, record) for record in records)
        arrived.set()

    producer = Producer({"bootstrap.servers": BROKER, "linger.ms": 0})
    try:
        feed.add(topic, await feed.end_offsets(topic, 2), receive)
        # the assignment is carried out between two polls, so it may wait out one whole poll:
        # a first record, not timed, shows that it has been
        producer.produce(topic, b"first", b"key", partition=1)
        await asyncio.to_thread(producer.flush, 10)
        await asyncio.wait_for(arrived.wait(), POLL_WAIT_S * 3)
        await asyncio.sleep(0.2)  # the poll thread is waiting in its next poll
        received.clear()
        for n in range(3):
            arrived.clear()
            producer.produce(topic, b"value-%d" % n, b"key", partition=n % 2)
            await asyncio.to_thread(producer.flush, 10)
            sent = time.monotonic()
            await asyncio.wait_for(arrived.wait(), POLL_WAIT_S * 2)
            taken = received[-1][0] - sent
            assert taken < POLL_WAIT_S / 2, f"record {n} waited {taken:.2f} s for its poll"
        assert [record[2] for _, record in received] == [b"value-0", b"value-1", b"value-2"]
        assert [record[:2] for _, record in received] == [(0, 0), (1, 1), (0, 1)]
    finally:
        await feed.stop()
        await delete_topics([topic])


async def test_end_offsets_wait_for_a_topic_whose_leaders_are_not_known_yet() -> None:
    """A subscription's topic created a moment ago may not have its partition leaders known
    yet (the broker answers "not leader" or "unknown topic"): the reader's start offsets are
    asked for again until they are, instead of failing the client that connected."""
    run = uuid.uuid4().hex[:8]
    settings = Settings(broker=BROKER, app_id=f"execdist-feed-{run}")
    topic = f"execdist-test-feed-late-{run}"
    feed = LiveFeed(settings)

    async def create_later() -> None:
        await asyncio.sleep(1.0)
        await create_topic(settings, topic, 2)

    try:
        creating = asyncio.create_task(create_later())
        ends = await feed.end_offsets(topic, 2)
        await creating
        assert ends == {0: 0, 1: 0}
    finally:
        await feed.stop()
        await delete_topics([topic])
