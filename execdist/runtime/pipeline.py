"""The pipeline runtime: consume a batch, process it, commit it in one transaction per partition.

A read-process-write loop the way Kafka Streams runs a task under exactly-once:

* One consumer per worker in the group ``<app id>-pipeline`` reads ``orders``, ``executions``,
  the tick topic and the positions repartition topic (``read_committed``). The range assignor
  gives a worker the same partition numbers of every topic, so partition N of all four, and of
  the tables, meet on one worker.
* Each assigned partition has its own transactional producer. A batch of records is processed
  partition by partition: table writes, confirmations, subscriber records, DLQ records, status
  events and the next input offsets go into that partition's transaction, and the transactions
  of a batch are committed concurrently. Only then do table writes reach RocksDB (see
  :mod:`execdist.tables.store`).
* A partition newly assigned to this worker gets a new producer first (which fences any
  previous owner and settles its open transaction), then its tables are restored from the
  committed changelogs, then its inputs are read from the offsets the restored state records.
* A failed commit (a fenced producer, a broker error, no answer within a minute) throws away
  what the partition did since its last commit, and the worker hands the partition back to the
  group: whoever is assigned it next restores it from the committed changelogs. State, outputs
  and offsets never disagree, and a worker that was paused past its session (a zombie) never
  takes a partition back by itself.
* A record whose processing raises is retried from the partition's last commit after a second.
  After ``MAX_ATTEMPTS`` failures it is handed to ``set_aside`` (the dead-letter topic) in the
  partition's transaction instead, so one record the join cannot process never holds up the
  orders behind it.
* Ticks: every ``tick_interval`` a tick record is appended to each owned partition of the tick
  topic, so timeouts are processed in the partition's own transaction like any input.

Commits happen only between batches, so a revocation waits for the batch in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiokafka.producer.sender
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError, KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from mode import Service

from execdist import topics
from execdist.agents.continuity import InputContinuity
from execdist.agents.publishing import PartitionTransaction
from execdist.domain import format_time
from execdist.metrics import Metrics
from execdist.settings import Settings
from execdist.tables.declarations import MAX_VALUE_BYTES
from execdist.tables.store import PartitionedState, RocksTables, restore
from execdist.topics import TP

log = logging.getLogger(__name__)

Handler = Callable[[TP, ConsumerRecord], Awaitable[None]]

SOURCES = (topics.ORDERS, topics.EXECUTIONS, topics.POSITIONS_BY_ACCOUNT, topics.TICKS)
"""Read in this order within a partition's share of a batch: an order before the executions
that arrived with it, ticks last."""

MAX_BATCH = 1000
YIELD_EVERY = 50
"""Records processed between two yields to the event loop, so that heartbeats, the relay and
HTTP requests are served during a large batch."""
RETRY_S = 1.0
MAX_ATTEMPTS = 3
"""Times a record whose processing raises is tried, each from its partition's last commit,
before it is set aside."""
COMMIT_TIMEOUT_S = 60.0

# A transaction begun right after a commit is refused with CONCURRENT_TRANSACTIONS until the
# broker has written the previous one's markers (KAFKA-5477); aiokafka then waits a fixed
# 20 ms before retrying, which put 20 ms on every transaction. The markers take a few
# milliseconds on a healthy broker: retry after 5 ms (each retry is a request, so not sooner).
aiokafka.producer.sender.BACKOFF_OVERRIDE = 0.005


class PartitionLost(Exception):
    """This worker no longer owns the partition (its producer was fenced)."""


class RecordFailed(Exception):
    """Processing one input record raised; the cause is chained."""

    def __init__(self, tp: TP, offset: int) -> None:
        super().__init__(f"processing {tp.topic}:{tp.partition}@{offset} failed")
        self.tp = tp
        self.offset = offset


SetAside = Callable[[TP, ConsumerRecord, str], Awaitable[None]]
"""Takes a record that failed ``MAX_ATTEMPTS`` times, with a description of its last error."""


@dataclass
class _Batch:
    """One partition's share of a polled batch."""

    partition: int
    records: dict[TP, list[ConsumerRecord]] = field(default_factory=dict)

    def next_offsets(self) -> dict[TP, int]:
        return {tp: records[-1].offset + 1 for tp, records in self.records.items()}


class Pipeline(Service):
    """Runs the join and the positions fold over the partitions this worker owns."""

    def __init__(
        self,
        settings: Settings,
        tables: RocksTables,
        states: Iterable[PartitionedState],
        continuity: InputContinuity,
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._tables = tables
        self._states = list(states)
        self._continuity = continuity
        self._metrics = metrics
        self.handlers: dict[str, Handler] = {}
        self.set_aside: SetAside = _keep_failing
        self.before_first_batch: Callable[[], Awaitable[object]] = _nothing
        self.released: list[Callable[[int], None]] = []
        """Called with a partition whose uncommitted work is thrown away or that leaves."""
        self.group_id = f"{settings.app_id}-pipeline"
        self._consumer: AIOKafkaConsumer | None = None
        self._tick_producer: AIOKafkaProducer | None = None
        self._transactions: dict[int, PartitionTransaction] = {}
        self._lock = asyncio.Lock()
        self._generation = 0
        self.rebalancing = True
        self.assigned_once = False
        self.committed: dict[TP, int] = {}
        self.batches = 0
        self._failures: dict[tuple[TP, int], tuple[int, str]] = {}
        """Records whose processing raised: (attempts, last error), until committed."""

    # ---- what the rest of the worker asks -------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        return sorted(self._transactions)

    @property
    def ready(self) -> bool:
        return self.assigned_once and not self.rebalancing

    def transaction(self, partition: int) -> PartitionTransaction:
        try:
            return self._transactions[partition]
        except KeyError:
            raise PartitionLost(partition) from None

    def lag(self) -> int:
        """Input records not yet committed, over the owned input partitions."""
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        for tp in consumer.assignment():
            if tp.topic not in (topics.ORDERS, topics.EXECUTIONS):
                continue
            end = consumer.last_stable_offset(tp)
            if end is None:
                continue
            total += max(end - self.committed.get(tp, end), 0)
        return total

    # ---- lifecycle ------------------------------------------------------------------------

    async def on_start(self) -> None:
        settings = self._settings
        session_ms = int(settings.session_timeout.total_seconds() * 1000)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{settings.worker_id}-pipeline",
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(session_ms // 4, 500),
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # one fetch is in flight per broker at a time: a partition whose records were just
            # consumed waits for it to return, so keep its wait short
            fetch_max_wait_ms=20,
        )
        await self._consumer.start()
        self._consumer.subscribe(list(SOURCES), listener=_Listener(self))
        self._tick_producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0
        )
        await self._tick_producer.start()
        self.add_future(self._run())
        self.add_future(self._tick_loop())

    async def on_stop(self) -> None:
        # the loop stops between batches; leaving the group hands partitions over at once
        async with self._lock:
            self.rebalancing = True
            for partition in list(self._transactions):
                await self._release(partition)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._tick_producer is not None:
            await self._tick_producer.stop()
        self._tables.close_all()

    # ---- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        await self.before_first_batch()
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            generation = self._generation
            try:
                polled = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            except KafkaError as exc:
                log.warning("polling the inputs failed, retrying: %r", exc)
                await self.sleep(RETRY_S)
                continue
            if not polled:
                continue
            async with self._lock:
                if generation != self._generation or self.should_stop:
                    self._rewind(polled)
                    continue
                await self._process(polled)

    def _rewind(self, polled: dict[TP, list[ConsumerRecord]]) -> None:
        """Put records back: they will be read again by whoever owns them next."""
        consumer = self._consumer
        assert consumer is not None
        for tp, records in polled.items():
            if records:
                # no longer assigned here: the next owner reads from the commit
                with contextlib.suppress(IllegalStateError, AssertionError):
                    consumer.seek(tp, records[0].offset)

    async def _process(self, polled: dict[TP, list[ConsumerRecord]]) -> None:
        started = time.perf_counter()
        batches: dict[int, _Batch] = {}
        for tp, records in polled.items():
            if records:
                batches.setdefault(tp.partition, _Batch(tp.partition)).records[tp] = records
        done: dict[int, _Batch] = {}
        for partition, batch in batches.items():
            if partition not in self._transactions:
                self._rewind(batch.records)
                continue
            try:
                await self._apply(batch)
                done[partition] = batch
            except PartitionLost:
                await self._lose(partition)
            except RecordFailed as failed:
                # Bad input does not get here: the join dead-letters undecodable and invalid
                # records itself. This is an unexpected failure (a bug, a record the join cannot
                # handle, a broker error while sending): the partition's batch is rolled back
                # and retried from its commit, so nothing is half-applied or skipped.
                attempts = self._note_failure(failed)
                log.error(
                    "%s (attempt %d of %d); retrying from the partition's last commit",
                    failed,
                    attempts,
                    MAX_ATTEMPTS,
                    exc_info=failed.__cause__,
                )
                await self._reset(partition)
            except Exception:
                # not one record's fault (flushing the recorded offsets, for one): nothing to
                # set aside, so roll back and retry (bad input is dead-lettered by the join)
                log.exception("processing partition %s failed; retrying from its commit", partition)
                await self._reset(partition)
        if not done:
            return
        applied = time.perf_counter()
        results = await asyncio.gather(
            *(self._commit(batch) for batch in done.values()), return_exceptions=True
        )
        for batch, result in zip(done.values(), results, strict=True):
            if isinstance(result, BaseException):
                # Fenced (another worker owns it now) or unknown outcome: either way this worker
                # must not touch the partition again until the group has assigned it anew.
                log.warning(
                    "commit of partition %s failed (%r); handing it back to the group",
                    batch.partition,
                    result,
                )
                await self._lose(batch.partition)
                self._request_rebalance()
        self.batches += 1
        elapsed = time.perf_counter() - started
        self._metrics.batch_seconds.observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch of %d records: applied in %.1f ms, committed in %.1f ms",
                sum(len(r) for r in polled.values()),
                (applied - started) * 1000,
                (time.perf_counter() - applied) * 1000,
            )

    async def _apply(self, batch: _Batch) -> None:
        for topic in SOURCES:
            for tp, records in batch.records.items():
                if tp.topic != topic:
                    continue
                handler = self.handlers[topic]
                for index, record in enumerate(records, 1):
                    if self._continuity.admit(tp, record.offset):
                        await self._handle(handler, tp, record)
                    if index % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
        any_tp = next(iter(batch.records))
        await self._continuity.flush(TP(topics.ORDERS, any_tp.partition))

    async def _handle(self, handler: Handler, tp: TP, record: ConsumerRecord) -> None:
        failure = self._failures.get((tp, record.offset))
        if failure is not None and failure[0] >= MAX_ATTEMPTS:
            attempts, error = failure
            log.error(
                "setting %s:%s@%s aside after %d failed attempts: %s",
                tp.topic,
                tp.partition,
                record.offset,
                attempts,
                error,
            )
            await self.set_aside(tp, record, f"{attempts} attempts failed, the last with {error}")
            return
        try:
            await handler(tp, record)
        except PartitionLost:
            raise
        except Exception as exc:
            raise RecordFailed(tp, record.offset) from exc

    def _note_failure(self, failed: RecordFailed) -> int:
        key = (failed.tp, failed.offset)
        attempts = self._failures.get(key, (0, ""))[0] + 1
        self._failures[key] = (attempts, repr(failed.__cause__))
        return attempts

    def _forget_failures(self, partition: int, before: dict[TP, int] | None = None) -> None:
        """Drop the failures noted for ``partition`` (only those ``before`` these offsets)."""
        self._failures = {
            (tp, offset): failure
            for (tp, offset), failure in self._failures.items()
            if tp.partition != partition or (before is not None and offset >= before.get(tp, 0))
        }

    async def _commit(self, batch: _Batch) -> None:
        transaction = self.transaction(batch.partition)
        offsets = batch.next_offsets()
        sent = await asyncio.wait_for(
            transaction.commit(offsets, self.group_id), timeout=COMMIT_TIMEOUT_S
        )
        for state in self._states:
            state.committed(batch.partition)
        self.committed.update(offsets)
        if self._failures:
            self._forget_failures(batch.partition, before=offsets)
        self._metrics.transaction_records.observe(sent)

    # ---- partitions coming and going ------------------------------------------------------

    async def _release(self, partition: int) -> None:
        transaction = self._transactions.pop(partition, None)
        if transaction is not None:
            await transaction.close()
        for state in self._states:
            state.aborted(partition)
            self._tables.close(state.spec.name, partition)
        self._continuity.forget(partition)
        for listener in self.released:
            listener(partition)
        self.committed = {tp: o for tp, o in self.committed.items() if tp.partition != partition}

    async def _lose(self, partition: int) -> None:
        """Another worker owns ``partition`` now: stop touching it until the next rebalance."""
        await self._release(partition)
        consumer = self._consumer
        assert consumer is not None
        mine = [tp for tp in consumer.assignment() if tp.partition == partition]
        if mine:
            consumer.pause(*mine)

    def _request_rebalance(self) -> None:
        """Ask the group to assign partitions again (aiokafka has no public call for it)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None:
            coordinator.request_rejoin()

    async def _reset(self, partition: int) -> None:
        """Throw away the partition's uncommitted work and start it again from its commit."""
        await self._release(partition)
        await asyncio.sleep(RETRY_S)
        try:
            await self._take([partition])
        except ProducerFenced:
            await self._lose(partition)

    async def _take(self, partitions: list[int]) -> None:
        """Own ``partitions``: fence the previous owner, restore the tables, position inputs."""
        if not partitions:
            return
        producers = {p: self._new_producer(p) for p in partitions}
        await asyncio.gather(*(producer.start() for producer in producers.values()))
        for partition, producer in producers.items():
            for state in self._states:
                self._tables.open(state.spec.name, partition, fresh=True)
            self._transactions[partition] = PartitionTransaction(partition, producer)
        await restore(self._tables, self._settings.bootstrap_servers, partitions)
        consumer = self._consumer
        assert consumer is not None
        assignment = consumer.assignment()
        for partition in partitions:
            self._continuity.forget(partition)
            stored = self._continuity.stored(partition)
            for tp in assignment:
                if tp.partition != partition:
                    continue
                if tp.topic in stored:
                    consumer.seek(tp, stored[tp.topic])
                    self.committed[tp] = stored[tp.topic]
                else:
                    position = await consumer.committed(tp)
                    if position is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, position)
                        self.committed[tp] = position
            consumer.resume(*[tp for tp in assignment if tp.partition == partition])

    def _new_producer(self, partition: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            transactional_id=f"{self._settings.app_id}-pipeline-{partition}",
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            # a partition's records wait for the one produce request in flight per broker:
            # big, compressed batches (state records are JSON and compress several times)
            max_batch_size=1024 * 1024,
            max_request_size=MAX_VALUE_BYTES + 64 * 1024,
            compression_type="lz4",
            # a transaction begun right after a commit meets CONCURRENT_TRANSACTIONS until the
            # broker has written the markers; retry soon rather than after 100 ms
            retry_backoff_ms=5,
        )

    async def on_revoked(self) -> None:
        async with self._lock:
            self._generation += 1
            self.rebalancing = True

    async def on_assigned(self, assigned: set[TP]) -> None:
        async with self._lock:
            wanted = {tp.partition for tp in assigned}
            for partition in set(self._transactions) - wanted:
                await self._release(partition)
                self._forget_failures(partition)
            new = sorted(wanted - set(self._transactions))
            started = time.monotonic()
            await self._take(new)
            # partitions kept through the rebalance resume from what was committed
            consumer = self._consumer
            assert consumer is not None
            for tp in assigned:
                if tp.partition not in new and tp in self.committed:
                    consumer.seek(tp, self.committed[tp])
            self._generation += 1
            self.rebalancing = False
            self.assigned_once = True
            self._metrics.assigned_partitions.set(len(wanted))
            log.info(
                "pipeline owns partitions %s (%s new, ready in %.2f s)",
                sorted(wanted),
                new,
                time.monotonic() - started,
            )

    # ---- ticks ----------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self._settings.tick_interval.total_seconds()
        while not self.should_stop:
            await self.sleep(interval)
            if self.rebalancing or self._tick_producer is None:
                continue
            value = format_time_now()
            for partition in self.partitions:
                try:
                    await self._tick_producer.send(topics.TICKS, value, partition=partition)
                except KafkaError as exc:  # the next tick will do
                    log.warning("could not request a tick for partition %s: %r", partition, exc)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self._pipeline.on_revoked()

    async def on_partitions_assigned(self, assigned: set[TP]) -> None:
        try:
            await self._pipeline.on_assigned(set(assigned))
        except Exception as exc:
            log.exception("taking over partitions failed; the worker stops")
            await self._pipeline.crash(exc)


def format_time_now() -> bytes:
    return format_time(datetime.now(UTC)).encode()


async def _nothing() -> None:
    return None


async def _keep_failing(tp: TP, record: ConsumerRecord, error: str) -> None:
    raise RuntimeError(f"no place to set {tp.topic}:{tp.partition}@{record.offset} aside: {error}")
