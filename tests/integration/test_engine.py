"""The engine on its own, in this process, against the real broker.

Its processor is the test's: it forwards each input record to an output topic, and raises for
a record marked as poison, the way a bug in the join would. What is set aside goes to the join's
dead-letter path, as in the worker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from confluent_kafka import Producer, TopicPartition
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.agents.continuity import InputContinuity
from execdist.agents.join import JoinProcessor
from execdist.codecs.input import InputDecoder
from execdist.infra.kafka_admin import create_topic, ensure_topics
from execdist.metrics import Metrics
from execdist.runtime.engine import MAX_ATTEMPTS, MAX_GATHER_S, Engine
from execdist.runtime.records import InputRecord
from execdist.runtime.topology import PunctuationContext, Topology
from execdist.runtime.transaction import CommitFailed, Committed, WorkerTransaction
from execdist.settings import Settings
from execdist.tables.declarations import HISTORY, ORDER_STATE, TIMERS
from execdist.tables.store import PartitionedState, RocksTables
from tests.integration.conftest import (
    BROKER,
    CONTRACT_TOPICS,
    REGISTRY_URL,
    delete_topics,
    read_committed,
)

pytestmark = pytest.mark.integration

POISON = b"poison"
SPOIL = b"spoil"
SOURCES = (topics.ORDERS, topics.EXECUTIONS, topics.POSITIONS_BY_ACCOUNT)


def errors(records: list[ConsumerRecord]) -> list[dict[str, object]]:
    """ERROR status events (the topic is new for this test: they are its own)."""
    events = [orjson.loads(r.value) for r in records]
    return [e for e in events if e["type"] == "ERROR"]


class Forward:
    """The test's processor: forwards inputs to ``output``, raises on poison. Optionally it
    takes ``cost`` seconds of the event loop per record (the join's work) and writes each
    record to ``table`` as well (so that a commit has table writes)."""

    def __init__(
        self,
        out: WorkerTransaction,
        output: str,
        join: JoinProcessor | None = None,
        *,
        cost: float = 0.0,
        table: PartitionedState | None = None,
    ) -> None:
        self._out = out
        self._output = output
        self._join = join
        self._cost = cost
        self._table = table
        self.attempts: list[int] = []
        self.forwarded: list[bytes] = []
        self.processed_at: list[float] = []
        """When each forwarded record was processed (``time.monotonic``)."""

    async def process(self, record: InputRecord) -> None:
        if record.value == POISON:
            self.attempts.append(record.offset)
            raise ValueError("this record cannot be processed")
        if self._cost:
            time.sleep(self._cost)
        if self._table is not None:
            self._table.put(record.partition, b"last", record.value or b"")
        self._out.send(self._output, record.key, record.value)
        self.forwarded.append(record.value or b"")
        self.processed_at.append(time.monotonic())

    async def set_aside(self, record: InputRecord, error: str) -> None:
        assert self._join is not None, "only the poison test sets records aside"
        await self._join.set_aside(record, error)

    def release(self, partition: int) -> None:
        return None


async def fresh_runtime(
    tmp_path: Path, **overrides: object
) -> tuple[Settings, str, RocksTables, WorkerTransaction, PartitionedState]:
    """Empty contract topics, an app of its own with an output topic, its tables and its
    transaction: (settings, output topic, tables, transaction, timers)."""
    await delete_topics(CONTRACT_TOPICS)
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        broker=BROKER,
        data_dir=tmp_path,
        app_id=f"execdist-runtime-{run}",
        **overrides,  # type: ignore[arg-type]
    )
    output = f"execdist-test-out-{run}"
    specs = await ensure_topics(settings)
    await create_topic(settings, output, 1)
    rocks = RocksTables(tmp_path / "tables", specs, 8 * 1024 * 1024)
    transaction = WorkerTransaction(settings, f"{settings.app_id}-test")
    timers = PartitionedState(rocks, rocks.specs[TIMERS])
    return settings, output, rocks, transaction, timers


def forwarding_engine(
    settings: Settings,
    rocks: RocksTables,
    transaction: WorkerTransaction,
    timers: PartitionedState,
    forward: Forward,
) -> tuple[Engine, Metrics]:
    """An engine whose one processor is ``forward``, with the timers table alone."""
    metrics = Metrics()
    topology = Topology(
        sources=dict.fromkeys(SOURCES, forward),
        tables=[timers],
        continuity=InputContinuity(timers),
    )
    return Engine(settings, topology, rocks, transaction, metrics), metrics


def setting_aside(
    settings: Settings,
    rocks: RocksTables,
    transaction: WorkerTransaction,
    timers: PartitionedState,
    metrics: Metrics,
) -> tuple[JoinProcessor, list[PartitionedState]]:
    """The join, for its dead-letter path (what the engine sets aside), and its tables."""
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    history = PartitionedState(rocks, rocks.specs[HISTORY])
    join = JoinProcessor(
        settings=settings,
        states=states,
        timers=timers,
        history=history,
        out=transaction,
        decoder=InputDecoder(AsyncSchemaRegistryClient(url=REGISTRY_URL)),
        metrics=metrics,
    )
    return join, [states, timers, history]


async def backlog(producer: AIOKafkaProducer, key: bytes, values: list[bytes]) -> None:
    """``values`` on the orders topic, there before the engine starts."""
    for value in values:
        await producer.send(topics.ORDERS, value, key=key)
    await producer.flush()


def transactions_committed(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("execdist_transaction_records_count") or 0


def stage_seconds(metrics: Metrics, stage: str, part: str) -> float:
    """``part`` (sum or count) of the engine's histogram of ``stage``."""
    value = metrics.registry.get_sample_value(f"execdist_stage_seconds_{part}", {"stage": stage})
    return value or 0


async def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


def keyed(key: bytes) -> Callable[[list[ConsumerRecord]], list[bytes | None]]:
    """The values of the records with ``key``, in the order read."""
    return lambda records: [r.value for r in records if r.key == key]


async def test_a_record_that_always_fails_is_set_aside_and_the_partition_goes_on(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    settings, output, rocks, transaction, timers = await fresh_runtime(tmp_path)
    metrics = Metrics()
    join, tables = setting_aside(settings, rocks, transaction, timers, metrics)
    forward = Forward(transaction, output, join)
    topology = Topology(
        sources=dict.fromkeys(SOURCES, forward),
        tables=tables,
        continuity=InputContinuity(timers),
    )
    pipeline = Engine(settings, topology, rocks, transaction, metrics)
    attempts = forward.attempts

    key = f"K-{settings.app_id}".encode()
    values = [b"before-1", b"before-2", POISON, b"after-1", b"after-2"]
    await pipeline.start()
    try:
        for value in values:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        mine = keyed(key)
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
    """A transaction's first record for a topic created after the producer started (a new
    subscription's topic) must not hold up the records queued for the others: the commit
    returns at once and every record is there."""
    run = uuid.uuid4().hex[:8]
    settings = Settings(broker=BROKER, app_id=f"execdist-runtime-{run}")
    known, new = f"execdist-test-known-{run}", f"execdist-test-new-{run}"
    await create_topic(settings, known, 1)
    transaction = WorkerTransaction(settings, f"execdist-test-{run}")
    await asyncio.to_thread(transaction.open)
    try:
        transaction.send(known, b"k", b"before", partition=0)
        await asyncio.to_thread(transaction.commit, [], None)

        await create_topic(settings, new, 1)
        for n in range(5):
            transaction.send(known, b"k", b"queued-%d" % n, partition=0)
        transaction.send(new, b"k", b"first", partition=0)
        started = time.monotonic()
        committed = await asyncio.to_thread(transaction.commit, [], None)
        assert committed.records == 6
        assert committed.offsets_s >= 0 and committed.produce_s >= 0 and committed.end_s > 0
        assert time.monotonic() - started < 5
    finally:
        transaction.close()
    records = await read_committed([known, new], lambda got: len(got) >= 7, timeout=15)
    assert sorted(r.value for r in records) == sorted(
        [b"before", b"first", *(b"queued-%d" % n for n in range(5))]
    )


async def test_a_commit_interval_puts_the_records_of_that_long_into_one_transaction(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """EXECDIST_COMMIT_INTERVAL_MS: records arriving within the interval share a transaction
    (far fewer commits than records), each record still arrives once and in order, and what
    is processed but not yet due commits when the worker stops."""
    interval = timedelta(milliseconds=400)
    settings, output, rocks, transaction, timers = await fresh_runtime(
        tmp_path, commit_interval=interval
    )
    forward = Forward(transaction, output)
    engine, metrics = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)

    await engine.start()
    try:
        deadline = time.monotonic() + 30
        while not engine.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert engine.ready, "the engine got its partitions"
        # 40 records 20 ms apart: 0.8 s, so about two intervals' worth of commits
        values = [b"v-%d" % n for n in range(40)]
        before, started = transactions_committed(metrics), time.monotonic()
        for value in values:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
            await asyncio.sleep(0.02)
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=30, settle=1
        )
        made, elapsed = transactions_committed(metrics) - before, time.monotonic() - started
        assert mine(forwarded) == values, "each record once, in order"
        # at most one commit per interval (and the first at once); without the interval,
        # about one per record
        assert made <= elapsed / interval.total_seconds() + 2, (made, elapsed)
        assert made < len(values) / 2, made
        # each commit's time is split into putting the offsets in, waiting for the records'
        # acknowledgements and ending the transaction
        commits = transactions_committed(metrics)
        within = ("offsets", "produce", "end")
        for part in within:
            assert stage_seconds(metrics, part, "count") == commits, part
        parts = sum(stage_seconds(metrics, part, "sum") for part in within)
        assert 0 < parts <= stage_seconds(metrics, "commit", "sum")
        assert stage_seconds(metrics, "produce", "sum") > 0, "records were acknowledged"

        # processed, not yet due: committed by the stop
        tail = [b"last-%d" % n for n in range(3)]
        for value in tail:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        deadline = time.monotonic() + 10
        while forward.forwarded[-3:] != tail and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        assert forward.forwarded[-3:] == tail
        stopping = time.monotonic()
    finally:
        await engine.stop()
    assert time.monotonic() - stopping < 5
    forwarded = await read_committed(
        [output], lambda got: len(mine(got)) >= len(values) + 3, timeout=15, settle=1
    )
    assert mine(forwarded) == values + tail


class ScriptedCommits(WorkerTransaction):
    """The worker's transaction on a broker that takes ``delay`` seconds to commit and, with
    ``fail_once``, fails the first commit with records with its outcome unknown (as when the
    broker times the transaction out), without committing it; with ``lose_producer_once``, as
    when its records timed out and the abort failed: not committed, the producer lost."""

    def __init__(
        self,
        settings: Settings,
        transactional_id: str,
        *,
        delay: float = 0.0,
        fail_once: bool = False,
        lose_producer_once: bool = False,
    ) -> None:
        super().__init__(settings, transactional_id)
        self.delay = delay
        self.to_fail = fail_once or lose_producer_once
        self.lose_producer = lose_producer_once
        self.failed = False
        self.opened = 0
        """Producers created (``init_transactions``) so far."""

        self.commits_started: list[float] = []
        """When each commit began (``time.monotonic``), as the event loop saw it: what the
        loop processed before belongs to that transaction, what it processed after to the
        next. (Taken on the producer's thread, the time could come after the loop had
        already processed a record or two of the next transaction.)"""

    def hold(self) -> None:
        self.commits_started.append(time.monotonic())
        super().hold()

    def open(self) -> None:
        super().open()
        self.opened += 1

    def commit(self, offsets: list[TopicPartition], group_metadata: object) -> Committed:
        time.sleep(self.delay)
        if self.to_fail and not self.failed and self.records:
            self.failed = True
            if self.lose_producer:
                raise CommitFailed(
                    "simulated: records timed out, the abort failed",
                    aborted=True,
                    producer_lost=True,
                )
            raise CommitFailed("simulated: commit failed, outcome unknown", aborted=False)
        return super().commit(offsets, group_metadata)


async def test_while_a_commit_runs_the_engine_keeps_processing_into_the_next_transaction(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """A commit's wait is spent processing what is there, not idle: with commits of 300 ms
    and records of 2 ms, a backlog of 300 records (0.6 s of processing) takes a handful of
    transactions, where batches cut at the 50 ms budget would take a dozen; every record
    still arrives once and in order."""
    settings, output, rocks, _, timers = await fresh_runtime(tmp_path)
    transaction = ScriptedCommits(settings, f"{settings.app_id}-slow", delay=0.3)
    forward = Forward(transaction, output, cost=0.002)
    engine, metrics = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)

    values = [b"v-%03d" % n for n in range(300)]
    await backlog(producer, key, values)
    await engine.start()
    try:
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=60, settle=1
        )
        assert mine(forwarded) == values, "each record once, in order"
        made = transactions_committed(metrics)
        assert made <= 6, f"{made} transactions for 0.6 s of records and 0.3 s commits"
    finally:
        await engine.stop()


async def test_an_input_that_comes_during_a_commit_is_processed_at_once_and_committed_next(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """A quiet worker waits for input or for the commit's end, whichever comes first: a
    record sent while a 0.5 s commit runs is processed while it runs, not after it, and its
    own commit starts as soon as that one has ended, not at the next poll."""
    delay = 0.5
    settings, output, rocks, _, timers = await fresh_runtime(tmp_path)
    transaction = ScriptedCommits(settings, f"{settings.app_id}-during", delay=delay)
    forward = Forward(transaction, output)
    engine, metrics = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)
    await engine.start()
    try:
        await producer.send_and_wait(topics.ORDERS, b"first", key=key)
        await wait_for(lambda: b"first" in forward.forwarded and transaction.commits_started, 30)
        first_commit = transaction.commits_started[-1]
        await producer.send_and_wait(topics.ORDERS, b"second", key=key)
        await wait_for(lambda: b"second" in forward.forwarded, 30)
        processed = forward.processed_at[forward.forwarded.index(b"second")]
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= 2, timeout=30, settle=0.5
        )
        assert mine(forwarded) == [b"first", b"second"], "each record once, in order"
        second_commit = next(at for at in transaction.commits_started if at > processed)
    finally:
        await engine.stop()
    assert processed - first_commit < delay * 0.8, (
        f"processed {processed - first_commit:.3f} s after a {delay} s commit began"
    )
    # it began when the first ended (its 0.5 s), not a poll's wait (0.1 s) later
    assert delay <= second_commit - first_commit < delay + 0.08, second_commit - first_commit
    assert transactions_committed(metrics) >= 2


async def test_records_polled_while_a_commit_fails_are_read_again_from_the_last_commit(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """The commit fails (its outcome unknown) while the loop waits for input: the records
    that came meanwhile, processed or only polled, are dropped with the rollback and read
    again from the last commit, once each, in order."""
    settings, output, rocks, _, timers = await fresh_runtime(tmp_path)
    transaction = ScriptedCommits(settings, f"{settings.app_id}-failing", delay=0.6, fail_once=True)
    forward = Forward(transaction, output, table=timers)
    engine, _ = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)
    values = [b"v-%02d" % n for n in range(12)]
    await engine.start()
    try:
        await producer.send_and_wait(topics.ORDERS, values[0], key=key)
        await wait_for(lambda: bool(transaction.commits_started), 30)
        for value in values[1:6]:  # during the commit that fails
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        await wait_for(lambda: transaction.failed, 30)
        for value in values[6:]:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=60, settle=1
        )
    finally:
        await engine.stop()
    assert mine(forwarded) == values, "each record once, in order"
    assert forward.forwarded.count(values[1]) == 2, (
        "processed during the failed commit, again after"
    )


async def test_a_commit_whose_outcome_is_unknown_is_rebuilt_from_the_changelogs(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """The worker's producer is re-created, the tables restored from what did commit and the
    inputs read again from there: each record arrives once, in order, and the engine goes on
    committing (the failed commit's sealed table writes are dropped with the rest)."""
    settings, output, rocks, _, timers = await fresh_runtime(tmp_path)
    transaction = ScriptedCommits(settings, f"{settings.app_id}-unknown", fail_once=True)
    forward = Forward(transaction, output, table=timers)
    engine, metrics = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)

    values = [b"v-%02d" % n for n in range(20)]
    await engine.start()
    try:
        for value in values[:10]:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        deadline = time.monotonic() + 30
        while not transaction.failed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert transaction.failed, "the first commit with records failed"
        for value in values[10:]:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=60, settle=1
        )
        assert mine(forwarded) == values, "each record once, in order"
        assert transactions_committed(metrics) >= 1
    finally:
        await engine.stop()


async def test_a_commit_known_not_to_have_committed_costs_the_producer_not_the_tables(
    tmp_path: Path, producer: AIOKafkaProducer, caplog: pytest.LogCaptureFixture
) -> None:
    """The first commit with records fails as when its records timed out and the abort failed
    too: the transaction did not commit, so the worker replaces its producer (which aborts
    it) and reads the inputs again from the last commit, without restoring its tables from
    the changelogs; each record arrives once, in order."""
    settings, output, rocks, _, timers = await fresh_runtime(tmp_path)
    transaction = ScriptedCommits(settings, f"{settings.app_id}-lost", lose_producer_once=True)
    forward = Forward(transaction, output, table=timers)
    engine, _ = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)
    values = [b"v-%02d" % n for n in range(20)]
    await engine.start()
    try:
        await wait_for(lambda: engine.ready, 30)
        caplog.set_level(logging.INFO, logger="execdist.runtime.restore")
        caplog.clear()
        for value in values[:10]:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        await wait_for(lambda: transaction.failed, 30)
        for value in values[10:]:
            await producer.send_and_wait(topics.ORDERS, value, key=key)
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=60, settle=1
        )
    finally:
        await engine.stop()
    assert mine(forwarded) == values, "each record once, in order"
    assert transaction.opened == 2, "a new producer after the failed abort"
    restores = [r for r in caplog.records if "changelog records for partitions" in r.message]
    assert not restores, [r.message for r in restores]


async def test_a_slow_commit_is_spent_processing_for_a_bounded_time(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """With commits slower than ``MAX_GATHER_S`` and a backlog waiting, the next transaction
    takes input for ``MAX_GATHER_S`` of the commit before it, then waits: not idle while
    input waits, and not for the whole commit (else a slow broker makes each transaction
    larger than the last, until one outlasts the transaction timeout)."""
    settings, output, rocks, _, timers = await fresh_runtime(tmp_path)
    transaction = ScriptedCommits(settings, f"{settings.app_id}-slower", delay=MAX_GATHER_S * 1.5)
    forward = Forward(transaction, output, cost=0.002)
    engine, _ = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)

    values = [b"v-%05d" % n for n in range(int(MAX_GATHER_S / 0.002 * 2.5))]
    await backlog(producer, key, values)
    await engine.start()
    try:
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=120, settle=1
        )
    finally:
        await engine.stop()
    assert mine(forwarded) == values, "each record once, in order"
    # how long each transaction took input, from its first record to its last: what was
    # processed from one commit's start to the next one's
    starts, done = transaction.commits_started, forward.processed_at
    spans = []
    for begun, ended in itertools.pairwise(starts):
        taken = [at for at in done if begun < at < ended]
        if taken:
            spans.append(taken[-1] - taken[0])
    # the last transaction is what was left of the backlog
    assert len(spans) >= 2, spans
    assert all(MAX_GATHER_S * 0.8 <= span <= MAX_GATHER_S * 1.15 for span in spans[:-1]), spans


class Spoiling(Forward):
    """Forwards like :class:`Forward`, and on the record ``SPOIL`` (its first ``spoils``
    times) also sends a record the broker refuses (larger than the ``small`` topic takes),
    so that the transaction fails the way a broker's abort does: the next ``produce`` raises.
    The record after ``SPOIL`` takes 0.3 s first, so the refusal has come back by then."""

    def __init__(
        self, out: WorkerTransaction, output: str, join: JoinProcessor, small: str, spoils: int
    ) -> None:
        super().__init__(out, output, join)
        self.small = small
        self.spoils = spoils
        self._spoiled = False

    async def process(self, record: InputRecord) -> None:
        if self._spoiled:
            self._spoiled = False
            time.sleep(0.3)
        if record.value == SPOIL and self.spoils:
            self.spoils -= 1
            self._spoiled = True
            self._out.send(self.small, record.key, os.urandom(4096))  # over its 1,024 bytes
        await super().process(record)


async def test_a_transaction_the_broker_fails_is_not_counted_against_the_record_being_sent(
    tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    """A record is set aside only for its own failures: when the transaction fails under it
    (``produce`` raises because the broker refused another record of the transaction), the
    batch is retried from the last commit, however often that happens. Here the transaction
    fails under the same record more than ``MAX_ATTEMPTS`` times; it is delivered, not
    dead-lettered."""
    settings, output, rocks, transaction, timers = await fresh_runtime(tmp_path)
    small = f"execdist-test-small-{settings.app_id}"
    await create_topic(settings, small, 1, {"max.message.bytes": "1024"})
    join, _ = setting_aside(settings, rocks, transaction, timers, Metrics())
    forward = Spoiling(transaction, output, join, small, spoils=MAX_ATTEMPTS + 1)
    engine, _ = forwarding_engine(settings, rocks, transaction, timers, forward)
    key = f"K-{settings.app_id}".encode()
    mine = keyed(key)

    await engine.start()
    try:
        await producer.send_and_wait(topics.ORDERS, b"before", key=key)
        await read_committed([output], lambda got: bool(mine(got)), timeout=60)
        # together, in one batch, with no commit in flight
        values = [b"before", SPOIL, b"victim", b"after"]
        for value in values[1:]:
            await producer.send(topics.ORDERS, value, key=key)
        await producer.flush()
        forwarded = await read_committed(
            [output], lambda got: len(mine(got)) >= len(values), timeout=60, settle=1
        )
        dead = await read_committed([topics.DLQ], lambda got: bool(mine(got)), timeout=5)
    finally:
        await engine.stop()
    assert forward.spoils == 0, "the broker refused a record of the transaction each time"
    assert mine(forwarded) == values, "each record once, in order"
    assert mine(dead) == [], "nothing set aside"


class OncePerPartition:
    """The test's punctuator: once per partition, as its table says, it sends a record and
    notes in the table that it did; the first call for ``fail_on`` sends a record and then
    raises, as a punctuation that fails half-way does."""

    def __init__(
        self, out: WorkerTransaction, output: str, table: PartitionedState, fail_on: int
    ) -> None:
        self._out = out
        self._output = output
        self._table = table
        self._fail_on = fail_on
        self.failed = False
        self.calls: list[int] = []

    async def __call__(self, context: PunctuationContext) -> None:
        partition = context.partition
        self.calls.append(partition)
        if partition == self._fail_on and not self.failed:
            self.failed = True
            self._out.send(self._output, b"p", b"half-way", partition=0)
            raise RuntimeError("this punctuation fails once")
        if self._table.get(partition, b"punctuated") is None:
            self._out.send(self._output, b"p", b"p%d" % partition, partition=0)
            self._table.put(partition, b"punctuated", b"yes")


async def test_punctuation_runs_in_the_transaction_and_commits_only_what_it_changed(
    tmp_path: Path,
) -> None:
    """Every owned partition is punctuated once per tick, inside the engine's transaction:
    what a punctuation sends and writes commits with it, a punctuation that raises rolls
    back the transaction (what it sent half-way, and what the others sent before it, which
    they send again), and once the punctuations change nothing, nothing more is committed."""
    settings, output, rocks, transaction, timers = await fresh_runtime(
        tmp_path, tick_interval=timedelta(seconds=0.1)
    )
    punctuator = OncePerPartition(transaction, output, timers, fail_on=1)
    metrics = Metrics()
    topology = Topology(
        sources=dict.fromkeys(SOURCES, Forward(transaction, output)),
        tables=[timers],
        continuity=InputContinuity(timers),
        punctuators=[punctuator],
    )
    engine = Engine(settings, topology, rocks, transaction, metrics)
    partitions = list(range(settings.topic_partitions))

    def rounds() -> int:
        return min(punctuator.calls.count(p) for p in partitions)

    await engine.start()
    try:
        records = await read_committed(
            [output], lambda got: len(got) >= len(partitions), timeout=60, settle=1
        )
        await wait_for(lambda: rounds() >= 3, timeout=30)
        committed_after = transactions_committed(metrics)
        await wait_for(lambda: rounds() >= 8, timeout=30)
        assert transactions_committed(metrics) == committed_after, "nothing left to commit"
        for p in partitions:  # in RocksDB: committed
            assert dict(timers.items_with_prefix(p, b"punctuated")) == {b"punctuated": b"yes"}
    finally:
        await engine.stop()

    assert punctuator.failed
    assert sorted(r.value for r in records) == [b"p%d" % p for p in partitions], "each once"
    assert stage_seconds(metrics, "punctuate", "count") >= 8


class BehindSeen:
    """A punctuator noting, at each tick of partition 0, how many orders the processor had
    processed and how far behind each input the engine said it was."""

    def __init__(self, forward: Forward) -> None:
        self._forward = forward
        self.seen: list[tuple[int, dict[str, float]]] = []

    def orders_processed(self) -> int:
        return sum(1 for value in self._forward.forwarded if value.startswith(b"order"))

    async def __call__(self, context: PunctuationContext) -> None:
        if context.partition == 0:
            self.seen.append((self.orders_processed(), dict(context.behind)))

    def topology(self, timers: PartitionedState) -> Topology:
        """Every source through the forwarding processor, this the one punctuator."""
        return Topology(
            sources=dict.fromkeys(SOURCES, self._forward),
            tables=[timers],
            continuity=InputContinuity(timers),
            punctuators=[self],
        )


async def test_punctuators_are_told_how_far_behind_their_inputs_the_worker_is(
    tmp_path: Path,
) -> None:
    """A partition's input counts as read to its end only once everything the broker holds of
    it is processed: not while a backlog of it is worked through, and also when its last entry
    is a transaction marker (its committed offset then never reaches the end offset). While
    the backlog is worked through, the worker is as far behind as its newest record processed
    is old."""
    settings, output, rocks, transaction, timers = await fresh_runtime(
        tmp_path, tick_interval=timedelta(seconds=0.1)
    )

    def caught_up(behind: dict[str, float]) -> bool:
        return all(behind.get(topic) == 0 for topic in SOURCES)

    backlog = 200
    plain = Producer({"bootstrap.servers": BROKER})
    # written a minute ago: a backlog, not records the worker keeps up with (those count as
    # read while they are fresh, test_read_to_end)
    a_minute_ago = int((time.time() - 60) * 1000)
    for n in range(backlog):
        plain.produce(topics.ORDERS, b"order-%d" % n, key=b"k", partition=0, timestamp=a_minute_ago)
    assert plain.flush(30) == 0
    transactional = Producer(
        {"bootstrap.servers": BROKER, "transactional.id": f"{settings.app_id}-feed"}
    )
    transactional.init_transactions(30)
    transactional.begin_transaction()
    transactional.produce(topics.EXECUTIONS, b"execution", key=b"k", partition=0)
    transactional.commit_transaction(30)

    forward = Forward(transaction, output, cost=0.01)  # the backlog takes 2 s to process
    seen = BehindSeen(forward)
    topology = seen.topology(timers)
    engine = Engine(settings, topology, rocks, transaction, Metrics())
    await engine.start()
    try:
        await wait_for(lambda: any(caught_up(behind) for _, behind in seen.seen), timeout=60)
    finally:
        await engine.stop()

    during = [behind.get(topics.ORDERS) for processed, behind in seen.seen if processed < backlog]
    assert len(during) >= 5, f"punctuated while the backlog was processed: {seen.seen}"
    assert all(lag is None or lag > 55 for lag in during), "a minute behind, or not known yet"
    assert any(lag is not None and 55 < lag < 120 for lag in during), seen.seen
    processed, _ = next((p, behind) for p, behind in seen.seen if caught_up(behind))
    assert processed == backlog
    assert forward.forwarded.count(b"execution") == 1


async def test_under_a_steady_flow_the_worker_knows_how_far_behind_it_is(
    tmp_path: Path,
) -> None:
    """A partition written to all the time often has more fetched than processed when a tick
    comes, so it is not read to its end; the worker then says how far behind it is (its own
    latency, the age of the newest record processed) rather than not knowing, and timeouts
    are judged that much late instead of waiting for the flow to stop."""
    settings, output, rocks, transaction, timers = await fresh_runtime(
        tmp_path, tick_interval=timedelta(seconds=0.05)
    )
    forward = Forward(transaction, output, cost=0.0002)  # busy 40 % of the time at 2,000/s
    seen = BehindSeen(forward)
    topology = seen.topology(timers)
    flowing = threading.Event()
    flowing.set()

    def flow() -> None:
        producer = Producer({"bootstrap.servers": BROKER, "linger.ms": 1})
        started, n = time.monotonic(), 0
        while flowing.is_set():
            if time.monotonic() < started + n / 2000:
                time.sleep(0.001)
                continue
            producer.produce(topics.ORDERS, b"order-%d" % n, key=b"k", partition=0)
            producer.poll(0)
            n += 1
        producer.flush(30)

    engine = Engine(settings, topology, rocks, transaction, Metrics())
    await engine.start()
    writer = threading.Thread(target=flow)
    try:
        await wait_for(lambda: engine.ready, timeout=60)
        flow_started = time.time()
        writer.start()
        await wait_for(lambda: seen.orders_processed() > 0, timeout=60)
        first_tick = len(seen.seen)
        await wait_for(lambda: len(seen.seen) >= first_tick + 120, timeout=60)
        during = [behind.get(topics.ORDERS) for _, behind in seen.seen[first_tick:]]
    finally:
        flowing.clear()
        if writer.is_alive():
            writer.join()
        await engine.stop()

    # never unknown, and never more than the flow's age (however far a slowed worker falls
    # behind it)
    age = time.time() - flow_started
    assert all(lag is not None and 0 <= lag <= age for lag in during), (age, during)
    assert any(lag for lag in during), f"never short of the end: not what is tested ({during})"


async def test_one_processors_topics_are_processed_in_timestamp_order_however_fetched(
    tmp_path: Path,
) -> None:
    """A backlog of a partition's orders written before its executions, with timestamps that
    interleave: the processor sees them in timestamp order, as Kafka Streams would, not as the
    fetches bring them (all the orders, which came first, then the executions). So an order's
    amendment written after an execution is applied after it, whatever the timing."""
    settings, output, rocks, transaction, timers = await fresh_runtime(tmp_path)
    plain = Producer({"bootstrap.servers": BROKER, "linger.ms": 5})
    base = int(time.time() * 1000) - 60_000
    written: list[tuple[int, bytes]] = []
    for topic, name, first in ((topics.ORDERS, b"order", 0), (topics.EXECUTIONS, b"exec", 1)):
        for n in range(500):
            stamp = base + 2 * n + first
            value = b"%s-%d" % (name, n)
            plain.produce(topic, value, key=b"k", partition=0, timestamp=stamp)
            written.append((stamp, value))
    assert plain.flush(30) == 0
    forward = Forward(transaction, output)
    engine, _ = forwarding_engine(settings, rocks, transaction, timers, forward)
    await engine.start()
    try:
        await wait_for(lambda: len(forward.forwarded) >= len(written), timeout=60)
    finally:
        await engine.stop()

    assert forward.forwarded == [value for _, value in sorted(written)]
