"""The pipeline runtime on its own, in this process, against the real broker.

Its handlers are the test's: they forward each input record to an output topic, and raise for
a record marked as poison, the way a bug in the join would. What is set aside goes to the join's
dead-letter path, as in the worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.agents.continuity import InputContinuity
from execdist.agents.join import JoinProcessor
from execdist.agents.publishing import PartitionTransaction, TransactionalPublisher
from execdist.codecs.input import InputDecoder
from execdist.infra.kafka_admin import create_topic, ensure_topics
from execdist.metrics import Metrics
from execdist.runtime.pipeline import MAX_ATTEMPTS, SOURCES, Pipeline
from execdist.settings import Settings
from execdist.tables.declarations import HISTORY, ORDER_STATE, TIMERS, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from execdist.topics import TP
from tests.integration.conftest import (
    BROKER,
    CONTRACT_TOPICS,
    REGISTRY_URL,
    delete_topics,
    read_committed,
)

pytestmark = pytest.mark.integration

POISON = b"poison"


def errors(records: list[ConsumerRecord]) -> list[dict[str, object]]:
    """ERROR status events (the topic is new for this test: they are its own)."""
    events = [orjson.loads(r.value) for r in records]
    return [e for e in events if e["type"] == "ERROR"]


async def test_a_record_that_always_fails_is_set_aside_and_the_partition_goes_on(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    await delete_topics(CONTRACT_TOPICS)
    run = uuid.uuid4().hex[:8]
    settings = Settings(broker=BROKER, data_dir=tmp_path, app_id=f"execdist-runtime-{run}")
    output = f"execdist-test-out-{run}"
    await ensure_topics(settings)
    await create_topic(settings, output, 1)

    rocks = RocksTables(tmp_path / "tables", table_specs(settings.app_id), 8 * 1024 * 1024)
    pipelines: list[Pipeline] = []
    publisher = TransactionalPublisher(lambda partition: pipelines[0].transaction(partition))
    timers = PartitionedState(rocks, rocks.specs[TIMERS], publisher.send_to_partition)
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE], publisher.send_to_partition)
    metrics = Metrics()
    pipeline = Pipeline(settings, rocks, [states, timers], InputContinuity(timers), metrics)
    pipelines.append(pipeline)
    join = JoinProcessor(
        settings=settings,
        states=states,
        timers=timers,
        history=PartitionedState(rocks, rocks.specs[HISTORY], publisher.send_to_partition),
        publisher=publisher,
        decoder=InputDecoder(AsyncSchemaRegistryClient(url=REGISTRY_URL)),
        metrics=metrics,
    )
    attempts: list[int] = []

    async def forward(tp: TP, record: ConsumerRecord) -> None:
        if record.value == POISON:
            attempts.append(record.offset)
            raise ValueError("this record cannot be processed")
        if tp.topic != topics.TICKS:
            await publisher.send(tp, output, record.key, record.value)

    async def set_aside(tp: TP, record: ConsumerRecord, error: str) -> None:
        await join.set_aside(tp, record.offset, record.key, record.value, error)

    pipeline.handlers = dict.fromkeys(SOURCES, forward)
    pipeline.set_aside = set_aside

    key = f"K-{run}".encode()
    values = [b"before-1", b"before-2", POISON, b"after-1", b"after-2"]
    await pipeline.start()
    try:
        for value in values:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        mine = lambda records: [r.value for r in records if r.key == key]  # noqa: E731
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= 4, timeout=60, settle=2
        )
        dead = await read_committed([topics.DLQ], lambda got: bool(mine(got)), timeout=10)
        status = await read_committed([topics.STATUS], lambda got: bool(errors(got)), timeout=10)
    finally:
        await pipeline.stop()

    assert mine(forwarded) == [v for v in values if v != POISON], "each good record once, in order"
    assert len(attempts) == MAX_ATTEMPTS and len(set(attempts)) == 1
    (record,) = [r for r in dead if r.key == key]
    assert record.value == POISON, "the original bytes"
    headers = {name: value.decode() for name, value in record.headers}
    assert headers["error.reason"] == "VALIDATION_ERROR"
    assert headers["error.topic"] == topics.ORDERS
    assert headers["error.offset"] == str(attempts[0])
    assert f"{MAX_ATTEMPTS} attempts failed" in headers["error.message"]
    assert "this record cannot be processed" in headers["error.message"]
    (event,) = errors(status)
    assert event["details"]["topic"] == topics.ORDERS
    assert event["details"]["offset"] == attempts[0]


async def test_a_topic_new_to_a_transaction_does_not_hold_up_the_others() -> None:
    """A transaction's first record for a topic created after its producer learned the others
    (a new subscription's topic) must not leave the records queued for those others without a
    leader: they used to wait until they expired, 40 s, and the commit failed."""
    run = uuid.uuid4().hex[:8]
    settings = Settings(broker=BROKER, app_id=f"execdist-runtime-{run}")
    known, new = f"execdist-test-known-{run}", f"execdist-test-new-{run}"
    await create_topic(settings, known, 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=BROKER,
        transactional_id=f"execdist-test-{run}",
        linger_ms=300,  # the known topic's records are still queued when the new one is sent to
    )
    await producer.start()
    try:
        await producer.client.force_metadata_update()  # tracking no topic: learns them all
        transaction = PartitionTransaction(0, producer)
        await transaction.send(known, b"k", b"before", partition=0)
        await asyncio.wait_for(transaction.commit({}, ""), 15)

        await create_topic(settings, new, 1)
        for n in range(5):
            await transaction.send(known, b"k", b"queued-%d" % n, partition=0)
        await transaction.send(new, b"k", b"first", partition=0)
        started = time.monotonic()
        await asyncio.wait_for(transaction.commit({}, ""), 15)
        assert time.monotonic() - started < 5
    finally:
        await producer.stop()
    records = await read_committed([known, new], lambda got: len(got) >= 7, timeout=15)
    assert sorted(r.value for r in records) == sorted(
        [b"before", b"first", *(b"queued-%d" % n for n in range(5))]
    )
