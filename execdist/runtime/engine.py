"""The engine: one worker's read-process-commit loop, the way a Kafka Streams thread runs.

* One consumer per worker process, in the group ``<app id>-pipeline``, reads the topology's
  source topics ``read_committed``; the range assignor gives a worker the same partition
  numbers of every co-partitioned topic, so partition N of the inputs and of the tables meet.
* The loop takes what the consumer has fetched (waiting only when nothing is there), processes
  it until a small time budget is spent, and commits at once:
  every output, changelog record and input offset of the batch, for all the worker's
  partitions, in one transaction of the worker's one producer (:mod:`.transaction`,
  :mod:`.commit`). A record waits for nothing it does not need: no record count, and not
  the producer's linger (the commit sends at once what the producer still holds).
  Unless a commit interval is set (``EXECDIST_COMMIT_INTERVAL_MS``): then the batches
  processed within that time since the last commit started share one transaction.
* While a batch commits, the loop polls and processes the next one: its outputs are held and
  its table writes kept apart until the commit has finished, then they begin the next
  transaction. A loop with nothing to process waits for input or for the commit's end,
  whichever comes first: an input that comes during a commit is processed at once, and the
  commit after it starts as soon as the one before has ended. If the commit fails, the batch
  built on it is dropped with it. The next batch goes on past its time budget for as long as
  the commit runs (and input is there), so a commit's wait is spent processing, never idle:
  the slower commits get (a loaded broker, many subscriber topics in each transaction), the
  more each transaction holds, as a group commit does, without holding any record longer
  than the commit before it takes.
* The records of the topics one processor reads (the join's orders and executions) are
  processed partition by partition in timestamp order, as Kafka Streams does, whatever order
  the fetches bring them in (:mod:`.ordering`): for the same inputs the same confirmations.
* Once per tick interval (``EXECDIST_TICK_INTERVAL_S``) the loop calls the topology's
  punctuators for every owned partition (timeouts, expiry, backfills; :mod:`.punctuation`),
  in the open transaction like a batch, as Kafka Streams runs a wall-clock punctuator: nothing goes
  through Kafka for it, and a punctuation that changed nothing commits nothing. Each is told
  how far behind its partition's inputs the worker is (:mod:`.read_to_end`), so that a
  timeout waiting for input does not fire while that input is still in a backlog.
* Partitions given to the worker are restored from their changelogs before their inputs are
  read (:mod:`.ownership`, :mod:`.restore`); a taken partition first waits for any transaction
  of its previous owner to settle (the consumer's committed-offset fetch is stable, KIP-447).
* A record whose processing raises rolls the whole transaction back; the worker resumes every
  partition from its last commit after a second. After ``MAX_ATTEMPTS`` failures the record is
  set aside (the dead-letter path) in the transaction instead. A commit that fails rolls back
  the same way; one whose outcome is unknown rebuilds the tables from the changelogs. A
  transaction known not to have committed whose abort fails costs the producer, not the
  tables: a new producer aborts it, and the tables hold exactly what did commit.

librdkafka's calls that wait run on two threads of the engine's own: the consumer's (poll,
seek) and the producer's (commit, abort), so a commit and the next poll overlap. The
processors, which are asyncio code sharing the worker's tables and subscription index with
the web views, run on the event loop. The consumer's rebalance callbacks run on the consumer's
thread inside ``poll`` and hand their work to the event loop, which first lets the commit in
flight finish, so partitions only ever change between two committed batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from mode import Service

from execdist import topics
from execdist.infra import clients
from execdist.metrics import LabelledChildren, Metrics
from execdist.runtime.client_thread import ClientThread
from execdist.runtime.commit import Committer
from execdist.runtime.ordering import SourceOrder
from execdist.runtime.ownership import Ownership
from execdist.runtime.punctuation import Punctuation, PunctuationFailed
from execdist.runtime.read_to_end import InputEnds, split_polled
from execdist.runtime.records import InputRecord
from execdist.runtime.topology import PunctuationContext, Topology
from execdist.runtime.transaction import (
    CommitFailed,
    Committed,
    TransactionFailed,
    WorkerTransaction,
)
from execdist.settings import Settings
from execdist.tables.store import RocksTables

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_POLL = 2000
"""Records taken from the consumer at once (it has them fetched already)."""
BATCH_BUDGET_S = 0.05
"""Processing time after which a batch is committed even if more records are waiting: the
first record of a batch waits for the last one's processing, so a batch stays short."""
MAX_GATHER_S = clients.TRANSACTION_TIMEOUT_MS / 1000 / 5
"""How long the next transaction may go on taking input while the commit before it runs,
from the start of its first batch (2 s). Past it the loop waits for that commit: a commit
slower than the processing must not grow the next transaction without bound, or that one
commits slower still, the one after it grows more, and at last one outlasts the broker's
transaction timeout (seen with 1,000 subscriber topics on a loaded broker). A fifth of that
timeout: under a steady load a commit takes well under a second, so the bound only stops a
runaway."""
YIELD_EVERY = 32
"""Records processed between two yields to the event loop (heartbeat-free, but the relay and
HTTP requests share the loop)."""
POLL_TIMEOUT_S = 0.1
WATERMARKS_EVERY_S = 0.5
"""How often at least the Kafka thread notes the inputs' high watermarks (the source of the
lag gauge, and of whether an input is read to its end); also after every poll that brought
records."""
RETRY_S = 1.0
MAX_ATTEMPTS = 3
"""Times a record whose processing raises is tried, each from the last commit, before it is
set aside."""
COMMITTED_TIMEOUT_S = 120.0
"""How long a newly assigned partition may wait for its previous owner's open transaction."""
COMMITTED_WAIT_S = 5.0
"""Asked in steps of this long, so that a long wait shows in the log."""


@dataclass
class _Processed:
    """Batches processed and not yet committed: the next input offsets to commit with them,
    and when the first of them started (``time.perf_counter``)."""

    offsets: dict[tuple[str, int], int]
    started: float


@dataclass
class _InFlight:
    """A batch whose transaction is committing on the producer's thread."""

    future: asyncio.Future[Committed]
    offsets: dict[tuple[str, int], int]
    batch_started: float
    committing: float
    """When its commit started (``time.perf_counter``)."""


class PollFailed(Exception):
    """Polling the inputs failed; the consumer's error is chained."""


class RecordFailed(Exception):
    """Processing one input record raised; the cause is chained."""

    def __init__(self, record: InputRecord) -> None:
        super().__init__(f"processing {record.where()} failed")
        self.record = record


class Engine(Service):
    """Runs the topology over the partitions this worker owns."""

    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        rocks: RocksTables,
        transaction: WorkerTransaction,
        metrics: Metrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._topology = topology
        self._rocks = rocks
        self._transaction = transaction
        self._metrics = metrics
        self._committer = Committer(transaction, topology.tables, topology.commit_followers)
        self._ownership = Ownership(settings, topology, rocks, self._committer)
        self.group_id = f"{settings.app_id}-pipeline"
        self._consumer: Consumer | None = None
        self._kafka: ClientThread | None = None
        self._producing: ClientThread | None = None
        self._in_flight: _InFlight | None = None
        """The commit running on the producer's thread while the next batch is processed."""
        self._processed: _Processed | None = None
        """What the next commit takes: with no commit interval, the one batch just processed;
        with one, every batch since the last commit started."""
        self._commit_interval = settings.commit_interval.total_seconds()
        self._last_commit = 0.0
        """When the last commit started (``time.perf_counter``)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._tick_s = settings.tick_interval.total_seconds()
        self._punctuation = Punctuation(topology.punctuators, self._tick_s)
        self._loop_failure: asyncio.Future[None] | None = None
        self._stopping = False
        self._pending: list[InputRecord] = []
        """Records whose turn it is, not processed yet (the last batch's time budget ran out)."""
        self._order = SourceOrder(topology.sources)
        """Records polled and held until their turn by timestamp among the topics their
        processor reads (:mod:`execdist.runtime.ordering`)."""
        self._ends = InputEnds()
        """How far behind the input partitions the worker is, for the punctuators."""
        self._failures: dict[tuple[str, int, int], tuple[int, str]] = {}
        """Records whose processing raised: (attempts, last error), until committed."""
        self.rebalancing = True
        self.assigned_once = False
        self._lag_children: dict[tuple[str, int], Any] = {}
        """The lag gauge's child of each partition reported, kept rather than looked up."""
        self._high_watermarks: dict[tuple[str, int], int] = {}
        """Each owned input partition's high watermark, noted on the Kafka thread."""
        self._watermarks_noted = 0.0
        """When they were last noted (``time.monotonic``)."""
        self._group_metadata: object | None = None
        """The consumer's group metadata (member id and generation) as of the last rebalance:
        asking librdkafka for it is a round trip to its main thread, with the interpreter
        lock held, so it is asked once per generation, not once per commit. A stale one is
        refused by the broker (the commit fails and is rolled back), never trusted."""
        self._rebalances = LabelledChildren(metrics.rebalances)
        self._record_wait = LabelledChildren(metrics.record_wait_seconds)
        self._stage = LabelledChildren(metrics.stage_seconds)

    # ---- what the rest of the worker asks -------------------------------------------------

    @property
    def partitions(self) -> list[int]:
        return sorted(self._ownership.owned)

    @property
    def ready(self) -> bool:
        return self.assigned_once and not self.rebalancing

    @property
    def committed(self) -> dict[tuple[str, int], int]:
        return {tp: o for tp, o in self._ownership.positions.items() if o >= 0}

    def lag(self) -> int:
        """Input records not yet committed, over the owned input partitions."""
        return sum(self.partition_lag().values())

    def partition_lag(self) -> dict[tuple[str, int], int]:
        """Input records not yet committed, per owned partition of the orders and executions,
        as of the consumer's high watermarks last noted on the Kafka thread (no request to
        the broker)."""
        highs = self._high_watermarks
        return {
            tp: max(highs[tp] - position, 0)
            for tp, position in self.committed.items()
            if tp in highs and tp[0] in (topics.ORDERS, topics.EXECUTIONS)
        }

    def _export_lag(self) -> None:
        """Set the per-partition lag gauge; partitions no longer owned leave it, so that a
        partition's lag is reported by its current owner only."""
        lag = self.partition_lag()
        gauge = self._metrics.input_lag
        for gone in self._lag_children.keys() - lag.keys():
            del self._lag_children[gone]
            gauge.remove(gone[0], str(gone[1]))
        for tp, value in lag.items():
            child = self._lag_children.get(tp)
            if child is None:
                child = self._lag_children[tp] = gauge.labels(tp[0], str(tp[1]))
            child.set(value)

    # ---- lifecycle ------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._kafka = ClientThread("execdist-kafka")
        self._kafka.start(self._loop)
        self._producing = ClientThread("execdist-producer")
        self._producing.start(self._loop)
        await self._producer_call(self._transaction.open)
        consumer = clients.pipeline_consumer(self._settings, self.group_id)
        consumer.subscribe(
            self._topology.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="execdist-engine")
        self._task.add_done_callback(self._loop_ended)
        self.add_future(self._lag_loop())

    async def on_stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=90)
        # leaving the group hands the partitions over at once
        self.rebalancing = True
        self._ownership.release()
        if self._consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                await self._blocking(self._consumer.close)
        with contextlib.suppress(KafkaException, RuntimeError):
            await self._producer_call(self._transaction.close)
        for thread in (self._kafka, self._producing):
            if thread is not None:
                thread.stop()
        self._rocks.close_all()

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        """Run a consumer call that waits on the engine's Kafka thread."""
        assert self._kafka is not None
        return await self._kafka.call(call, *args)

    async def _producer_call(self, call: Callable[..., T], *args: Any) -> T:
        """Run a call of the worker's transaction that waits (open, commit, abort, close) on
        the producer's thread, so that the consumer can poll meanwhile."""
        assert self._producing is not None
        return await self._producing.call(call, *args)

    # ---- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._topology.ready()
        while not self._stopping:
            try:
                # enough waiting already: not polled this time
                more = await self._take_input() if len(self._pending) < MAX_POLL else True
                # the next batch is processed while the previous one commits
                if self._pending:
                    await self._batch()
                if self._punctuation.due():
                    await self._punctuate()
                if self._committing():
                    if self._processed is None:
                        continue  # nothing waits for the commit: wait for input or its end
                    if more and self._may_gather():
                        continue  # more input may be there: take it while the commit runs
                if await self._settle() and self._processed is not None and self._commit_due():
                    self._start_commit()
            except PollFailed as exc:
                log.warning("polling the inputs failed, retrying: %s", exc.__cause__)
                await asyncio.sleep(RETRY_S)
            except (KafkaException, CommitFailed, TransactionFailed) as exc:
                # Kafka refused a record or the transaction outside any one record's processing
                # (a record's own failures are caught per record and end in the DLQ)
                log.warning(
                    "a batch failed (%s); resuming every partition from its last commit", exc
                )
                await self._rollback()
                await asyncio.sleep(RETRY_S)
        await self._commit_processed()

    async def _take_input(self) -> bool:
        """Poll the consumer: what it has fetched, and, with nothing to do until then, the
        first input to come within :meth:`_poll_wait`; True if it brought records. Those
        whose turn it is join :attr:`_pending`.

        The loop has nothing to do until then when nothing waits to be processed and nothing
        processed waits for the commit that runs. A commit that ends during the wait is
        settled at once: an input that comes while a commit runs is processed at once and
        committed right after it, and a quiet worker makes one call to the Kafka thread per
        input. Once something is processed for the next commit, the loop only takes what is
        fetched already and then waits for the commit, so that what comes meanwhile is
        processed in one batch after it, not record by record. While it waits for input, the
        loop only settles and starts commits, which do not wait: the rebalance callbacks,
        which run inside the poll, hand their work to the event loop, and the loop processes
        nothing until the poll is back, so partitions only change between batches."""
        assert self._kafka is not None
        busy = self._pending or (self._committing() and self._processed is not None)
        poll = self._kafka.call(self._poll, 0.0 if busy else self._poll_wait())
        try:
            keep = await self._settle_while(poll)
        except Exception:
            await _outcome(poll)  # its records came before the rollback that follows
            raise
        if not keep:
            return False
        try:
            polled, ends = await poll
        except KafkaException as exc:
            raise PollFailed from exc
        self._ends.polled(ends)
        # those whose turn it is by timestamp, after the records still waiting
        self._pending.extend(self._order.arrange(polled, self._fetched_to_end, time.monotonic()))
        return bool(polled)

    async def _settle_while(self, poll: asyncio.Future[Any]) -> bool:
        """Until ``poll`` is back: settle each commit that ends, and start the next with
        what is processed (when due). False when a commit failed: it is rolled back once the
        poll is back, and the poll's records are to be dropped, since they were fetched
        before the rollback seeks the inputs back to the last commit."""
        while not poll.done() and (in_flight := self._in_flight) is not None:
            ended = in_flight.future
            await asyncio.wait((poll, ended), return_when=asyncio.FIRST_COMPLETED)
            if poll.done() or in_flight is not self._in_flight:
                continue  # or a rebalance callback inside the poll settled it
            if ended.cancelled() or ended.exception() is not None:
                await _outcome(poll)
                await self._settle()  # rolls back (or raises, and the loop rolls back)
                return False
            if await self._settle() and self._processed is not None and self._commit_due():
                self._start_commit()
        return True

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """Anything else the loop cannot handle stops the worker, visibly, rather than leave it
        serving HTTP with its partitions no longer processed; its partitions move on."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("the engine's loop failed; the worker stops", exc_info=error)
        assert error is not None
        self._loop_failure = asyncio.ensure_future(self.crash(error))

    def _poll_wait(self) -> float:
        """How long an idle loop may wait for input: until what is processed is due to
        commit, if anything is, or the punctuators are due. While a commit runs, its end
        ends the wait too (:meth:`_settle_while`)."""
        wait = self._punctuation.until_due()
        if self._processed is not None:
            due = self._last_commit + self._commit_interval - time.perf_counter()
            wait = min(wait, max(due, 0.0))
        return min(wait, POLL_TIMEOUT_S)

    def _commit_due(self) -> bool:
        return time.perf_counter() - self._last_commit >= self._commit_interval

    def _committing(self) -> bool:
        """Whether a commit is running on the producer's thread (and not finished yet)."""
        return self._in_flight is not None and not self._in_flight.future.done()

    def _gather_until(self, now: float) -> float:
        """Until when (``time.perf_counter``) the open transaction may take input while a
        commit runs: :data:`MAX_GATHER_S` after its first batch began (``now``, if none has)."""
        first = now if self._processed is None else self._processed.started
        return first + MAX_GATHER_S

    def _may_gather(self) -> bool:
        """Whether the open transaction may take another batch while the commit runs."""
        now = time.perf_counter()
        return now < self._gather_until(now)

    def _fetched_to_end(self, tp: tuple[str, int]) -> bool:
        return self._ends.fetched_to_end(tp, self._order.fetched(tp), self._high_watermarks)

    def _poll(self, wait: float) -> tuple[list[InputRecord], dict[tuple[str, int], int]]:
        """On the Kafka thread: what is fetched already; if nothing, wait up to ``wait``
        seconds for the first record. With the records, the partitions' end events among
        them (:func:`~execdist.runtime.read_to_end.split_polled`)."""
        consumer = self._consumer
        assert consumer is not None
        messages = clients.take_fetched(consumer, MAX_POLL, wait)
        # also after every poll that brought anything, so that they are never older than what
        # is processed or the end events polled (the punctuators compare them): while enough
        # records wait the loop does not poll, and one noted before a backlog came would
        # make the backlog look read
        if messages or time.monotonic() - self._watermarks_noted >= WATERMARKS_EVERY_S:
            self._note_watermarks(consumer)
        return split_polled(messages)

    def _note_watermarks(self, consumer: Consumer) -> None:
        """On the Kafka thread: each owned input partition's high watermark as of the last
        fetch, for :meth:`partition_lag` and the punctuators. Never asked on the event loop:
        while this thread is in a rebalance callback (which waits for the loop), librdkafka
        holds the locks that call waits for, and the two threads would wait for each other
        for good."""
        highs = {}
        for topic, partition in list(self._ownership.positions):
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                highs[(topic, partition)] = high
        self._high_watermarks = highs
        self._watermarks_noted = time.monotonic()

    async def _batch(self) -> None:
        """Process waiting records until the time budget is spent; what is to be committed
        joins :attr:`_processed`."""
        started = time.perf_counter()
        records = self._pending
        deadline = started + BATCH_BUDGET_S
        last_call = self._gather_until(started)
        offsets: dict[tuple[str, int], int] = {}
        newest: dict[tuple[str, int], float] = {}
        continuity = self._topology.continuity
        owned = self._ownership.owned
        taken = len(records)
        began = time.time()
        waited = self._record_wait
        for index, record in enumerate(records):
            if index and index % YIELD_EVERY == 0:
                await asyncio.sleep(0)
                now = time.perf_counter()
                if now > deadline and (not self._committing() or now > last_call):
                    taken = index
                    break
            if record.partition not in owned:
                continue
            key = (record.topic, record.partition)
            if continuity.admit(key, record.offset):
                if record.timestamp is not None:
                    waited[record.topic].observe(max(began - record.timestamp, 0.0))
                    newest[key] = record.timestamp
                try:
                    await self._process(record)
                except RecordFailed as failed:
                    await self._failed(failed)
                    return
            offsets[key] = record.offset + 1
        del records[:taken]
        self._ends.processed(newest)
        if not offsets:
            return
        for partition in {p for _, p in offsets}:
            continuity.flush(partition)
        self._stage["process"].observe(time.perf_counter() - started)
        if self._processed is None:
            self._processed = _Processed(offsets, started)
        else:
            self._processed.offsets.update(offsets)  # a partition's offsets only grow

    async def _process(self, record: InputRecord) -> None:
        processor = self._topology.sources[record.topic]
        failure = self._failures.get((record.topic, record.partition, record.offset))
        if failure is not None and failure[0] >= MAX_ATTEMPTS:
            attempts, error = failure
            log.error(
                "setting %s aside after %d failed attempts: %s",
                record.where(),
                attempts,
                error,
                extra=record.log_fields(),
            )
            try:
                await processor.set_aside(
                    record, f"{attempts} attempts failed, the last with {error}"
                )
            except Exception as exc:
                raise RecordFailed(record) from exc
            return
        try:
            await processor.process(record)
        except TransactionFailed:
            raise  # the transaction's failure, not the record's: the batch is rolled back
        except Exception as exc:
            raise RecordFailed(record) from exc

    async def _failed(self, failed: RecordFailed) -> None:
        record = failed.record
        key = (record.topic, record.partition, record.offset)
        attempts = self._failures.get(key, (0, ""))[0] + 1
        self._failures[key] = (attempts, repr(failed.__cause__))
        # Bad input does not get here: the join dead-letters undecodable and invalid records
        # itself. This is an unexpected failure (a bug, a record the join cannot handle): the
        # transaction is rolled back and retried from the last commit, so nothing is
        # half-applied or skipped.
        log.error(
            "%s (attempt %d of %d); retrying from the last commit",
            failed,
            attempts,
            MAX_ATTEMPTS,
            exc_info=failed.__cause__,
            extra=record.log_fields(),
        )
        await self._rollback()
        await asyncio.sleep(RETRY_S)

    async def _punctuate(self) -> None:
        """Run the punctuators for every owned partition in the open transaction (none while
        partitions change hands); if they changed anything, it is committed like a batch. One
        that raises rolls the transaction back, as a failed record does, and the next tick
        tries again."""
        started = time.perf_counter()
        owned = [] if self.rebalancing else sorted(self._ownership.owned)
        sources = self._topology.topics
        waiting = {(record.topic, record.partition) for record in self._pending}
        waiting |= self._order.held()
        highs, processed = self._high_watermarks, self._topology.continuity.next_offset
        now = time.time()
        contexts = [
            PunctuationContext(
                partition,
                self._ends.behind(partition, sources, waiting, highs, processed, now),
            )
            for partition in owned
        ]
        try:
            await self._punctuation.run(contexts)
        except PunctuationFailed as failed:
            log.error(
                "%s; resuming every partition from its last commit, and trying again at the "
                "next tick",
                failed,
                exc_info=failed.__cause__,
                extra={"partition": failed.partition},
            )
            await self._rollback()
            return
        self._stage["punctuate"].observe(time.perf_counter() - started)
        if self._processed is None and self._committer.has_changes():
            self._processed = _Processed({}, started)

    def _start_commit(self) -> None:
        """Send the changelogs of what is processed and start committing it on the producer's
        thread; what the next batch sends meanwhile is held for the next transaction."""
        consumer = self._consumer
        processed, self._processed = self._processed, None
        assert consumer is not None and self._producing is not None
        assert processed is not None
        offsets, batch_started = processed.offsets, processed.started
        self._last_commit = time.perf_counter()
        self._committer.send_changelogs()
        group_metadata = self._group_metadata
        if group_metadata is None:  # not assigned yet: nothing can be processed before that
            group_metadata = self._group_metadata = consumer.consumer_group_metadata()
        self._transaction.hold()
        future = self._producing.call(self._committer.commit, offsets, group_metadata)
        self._in_flight = _InFlight(future, offsets, batch_started, time.perf_counter())

    async def _commit_processed(self, *, seek: bool = True) -> None:
        """Commit what is processed now, not at its interval (partitions are leaving, or the
        worker stops), and wait for it."""
        if await self._settle(seek=seek) and self._processed is not None:
            self._start_commit()
        await self._settle(seek=seek)

    async def _settle(self, *, seek: bool = True) -> bool:
        """Wait for the commit in flight, if there is one, and apply it locally; then what
        was held begins the next transaction. False when the commit failed: every partition
        then resumes from its last commit (without seeking the consumer when ``seek`` is
        false: inside a rebalance callback, which runs on the consumer's thread)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return True
        try:
            committed = await in_flight.future
        except CommitFailed as exc:
            self._transaction.discard()
            log.warning("the commit failed (%s); resuming from the last commit", exc)
            if not exc.aborted:
                await self._rebuild(seek=seek)
                return False
            if exc.producer_lost:
                await self._renew_producer()
            await self._resume_from_commit(seek=seek)
            return False
        # a local write that fails now ends the loop and so the worker (see _loop_ended):
        # rolling back would replay what Kafka already holds as committed
        self._committer.apply()
        offsets = in_flight.offsets
        self._ownership.committed(offsets)
        if self._failures:
            self._failures = {
                key: failure
                for key, failure in self._failures.items()
                if key[2] >= offsets.get((key[0], key[1]), 0)
            }
        done = time.perf_counter()
        self._metrics.transaction_records.observe(committed.records)
        stage = self._stage
        stage["commit"].observe(done - in_flight.committing)
        stage["offsets"].observe(committed.offsets_s)
        stage["produce"].observe(committed.produce_s)
        stage["end"].observe(committed.end_s)
        self._metrics.batch_seconds.observe(done - in_flight.batch_started)
        self._transaction.release()
        return True

    # ---- going back to the last commit --------------------------------------------------

    async def _rollback(self) -> None:
        """Abort the open transaction and resume every partition from its last commit (a
        commit in flight finishes first: it holds the batch before)."""
        if not await self._settle():
            return  # it failed, and everything was resumed from the last commit already
        if await self._producer_call(self._transaction.abort):
            await self._resume_from_commit()
        elif not self._transaction.fenced:
            # the transaction never committed: a new producer aborts it, and the tables
            # already hold exactly what did commit
            await self._renew_producer()
            await self._resume_from_commit()
        else:
            await self._rebuild()

    async def _resume_from_commit(self, *, seek: bool = True) -> None:
        """The transaction is aborted: RocksDB holds exactly what committed, so dropping the
        uncommitted writes and caches and seeking the inputs back is enough."""
        self._pending.clear()
        self._order.forget()
        self._ends.forget()
        self._processed = None
        self._ownership.forget_uncommitted()
        if seek:
            await self._seek(self._ownership.resume_positions())

    async def _rebuild(self, *, seek: bool = True) -> None:
        """The transaction's outcome is unknown (or the producer was fenced): start a new
        producer, which settles the old transaction, and restore every owned partition from
        what did commit (in a rebalance callback, only drop what is uncommitted: the
        partitions are leaving, and the next assignment restores what it is given)."""
        self._pending.clear()
        self._order.forget()
        self._ends.forget()
        self._processed = None
        await self._renew_producer()
        if seek:
            await self._seek(await self._ownership.rebuild())
        else:
            self._ownership.forget_uncommitted()

    async def _renew_producer(self) -> None:
        """Replace the worker's producer: the new one's ``init_transactions`` fences the old
        one and aborts its open transaction, if any."""
        while not self._stopping:
            try:
                await self._producer_call(self._transaction.close)
                await self._producer_call(self._transaction.open)
                return
            except KafkaException as exc:
                log.warning("re-creating the worker's producer failed, retrying: %s", exc)
                await asyncio.sleep(RETRY_S)

    async def _seek(self, positions: list[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None

        def seek_all() -> None:
            for tp in positions:
                try:
                    consumer.seek(tp)
                except KafkaException as exc:
                    # no longer assigned here: the next owner reads from the commit
                    log.info("not seeking %s:%s: %s", tp.topic, tp.partition, exc)

        await self._blocking(seek_all)

    # ---- partitions coming and going (rebalance callbacks, on the Kafka thread) ---------

    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        self._rebalances["assigned"].inc()
        # KIP-447: this fetch waits while a previous owner's transaction holds offsets of
        # these partitions, so the changelogs are read only once that transaction settled
        committed = _settled_offsets(consumer, assigned) if assigned else []
        positioned = self._on_loop(self._assigned(committed))
        consumer.assign(positioned)
        # the generation this assignment comes with, which every commit until the next
        # assignment names; asked here, on the consumer's thread, because the call waits for
        # librdkafka's own thread and holds the GIL meanwhile: on the event loop it would
        # hold up everything else, at the moment of a rebalance
        self._group_metadata = consumer.consumer_group_metadata()

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self._rebalances["revoked"].inc()
        self._on_loop(self._revoked(revoked))

    def _on_lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        # the group moved on without this worker (a missed session timeout, say)
        self._rebalances["lost"].inc()
        partitions = sorted({tp.partition for tp in lost})
        log.warning(
            "partitions lost to the group: %s", partitions, extra={"partitions": partitions}
        )
        self._on_loop(self._revoked(lost))

    def _on_loop(self, coroutine: Any) -> Any:
        loop = self._loop
        assert loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    async def _assigned(self, committed: list[TopicPartition]) -> list[TopicPartition]:
        await self._settle(seek=False)
        try:
            positioned = await self._ownership.take(committed)
        except Exception as exc:
            log.exception("taking over partitions failed; the worker stops")
            await self.crash(exc)
            raise
        self._order.forget({tp.partition for tp in committed})
        self._ends.forget({tp.partition for tp in committed})
        # noted afresh at the next poll, not left from partitions owned before
        self._high_watermarks, self._watermarks_noted = {}, 0.0
        self.rebalancing = False
        self.assigned_once = True
        self._metrics.assigned_partitions.set(len(self._ownership.owned))
        return positioned

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        # the partitions' last batches commit (or not) before they go: the consumer polls
        # only between a batch's start of commit and the next batch
        await self._commit_processed(seek=False)
        self.rebalancing = True
        self._pending.clear()
        self._order.forget({tp.partition for tp in revoked})
        self._ends.forget({tp.partition for tp in revoked})
        # with the eager protocol every partition is revoked before the next assignment
        self._ownership.release(sorted({tp.partition for tp in revoked}))
        self._failures.clear()

    # ---- the lag gauge ----------------------------------------------------------------------

    async def _lag_loop(self) -> None:
        while not self.should_stop:
            await self.sleep(self._tick_s)
            self._export_lag()


async def _outcome(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` and drop what it brings, its error included."""
    await asyncio.wait((future,))
    if not future.cancelled():
        future.exception()  # retrieved, so that asyncio does not log it as never retrieved


def _settled_offsets(consumer: Consumer, assigned: list[TopicPartition]) -> list[TopicPartition]:
    """The group's committed offsets of ``assigned``, once no transaction holds any of them
    (the fetch is stable under ``read_committed``: KIP-447)."""
    started = time.monotonic()
    while True:
        try:
            return consumer.committed(assigned, timeout=COMMITTED_WAIT_S)
        except KafkaException as exc:
            waited = time.monotonic() - started
            if waited >= COMMITTED_TIMEOUT_S:
                raise
            log.warning(
                "newly assigned partitions: committed offsets not settled after %.0f s "
                "(a previous owner's transaction still open?), asking again: %s",
                waited,
                exc,
            )
