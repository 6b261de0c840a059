"""The worker's transaction: every output of a batch, committed with its input offsets.

One transactional producer per worker process, the Kafka Streams exactly-once v2 way
(KIP-447): the input offsets are committed with the consumer's group metadata, so the broker
refuses the commit of a worker that the group no longer counts as the partitions' owner (a
zombie is fenced by the group generation), and one transaction covers every partition the
worker owns. Processors reach it only through :meth:`WorkerTransaction.send` (the ``forward``
of Kafka Streams); the commit belongs to :mod:`execdist.runtime.commit`.

The producer's calls that wait for the broker (``init_transactions``, the commit, the abort)
block; the engine runs them on a thread of their own, never on the event loop. While a commit
runs there, the engine processes the next batch: what it sends is held (:meth:`hold`) and
begins the next transaction once the commit has finished (:meth:`release`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from execdist.infra import clients
from execdist.settings import Settings

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 60.0
RETRY_FIRST_S = 0.01
RETRY_MAX_S = 0.5
"""Pauses between tries of a transaction call that failed with a retriable error."""
_TRANSACTION_STATES = (KafkaError._STATE, KafkaError._FENCED)
"""Errors of ``produce`` that are the transaction's, not the record's: the producer is in an
abortable error state (the broker aborted the transaction) or fenced."""
UNASSIGNED = -1
"""librdkafka's "no partition given": the partitioner (murmur2, as Java's) chooses."""
INIT_TIMEOUT_S = 60.0


class RecordSink(Protocol):
    """What a processor forwards its outputs to (the worker's open transaction)."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None: ...


_Send = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None, int | None]


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed transaction: the records it held, and where its commit's time went."""

    records: int
    offsets_s: float
    """Putting the input offsets into the transaction (AddOffsetsToTxn, TxnOffsetCommit)."""
    produce_s: float
    """Then waiting for the records not yet acknowledged (librdkafka has been sending them
    since they were produced), their delivery reports served."""
    end_s: float
    """Then ``commit_transaction``: the transaction's end (EndTxn, after which the broker
    writes its markers)."""


class TransactionFailed(Exception):
    """The open transaction takes no more records: the broker aborted it (it outlasted the
    transaction timeout, or a record of it was not delivered) or fenced the producer. The
    batch is rolled back, not the record that was being sent; the cause is chained."""


class CommitFailed(Exception):
    """The transaction did not commit. ``aborted`` says whether it is known not to have
    committed; otherwise its outcome is unknown and the state must be rebuilt from what did
    commit. ``producer_lost``: aborting it failed, so the producer must be replaced (the new
    one's ``init_transactions`` aborts it), but it is still known not to have committed."""

    def __init__(self, message: str, *, aborted: bool, producer_lost: bool = False) -> None:
        super().__init__(message)
        self.aborted = aborted
        self.producer_lost = producer_lost


class WorkerTransaction:
    """The worker's transactional producer and its open transaction."""

    def __init__(self, settings: Settings, transactional_id: str) -> None:
        self._settings = settings
        self.transactional_id = transactional_id
        self._producer: Producer | None = None
        self._open = False
        self.records = 0
        """Records sent in the open transaction."""
        self._undelivered: set[str] = set()
        self._undelivered_lock = threading.Lock()
        self._held: list[_Send] | None = None
        """While a commit is in flight: the next transaction's records, kept until it has
        finished (a transaction cannot begin before the previous one is committed)."""
        self.fenced = False
        """The last abort that failed did so because another producer with this
        transactional id fenced this one: what committed since may not be this worker's."""

    # ---- lifecycle (blocking: on the Kafka thread) --------------------------------------

    def open(self) -> None:
        """Create the producer and fence any earlier incarnation with the same id (its open
        transaction is aborted)."""
        producer = clients.transactional_producer(
            self._settings, self.transactional_id, self._on_failed_delivery
        )
        producer.init_transactions(INIT_TIMEOUT_S)
        self._producer = producer
        self.fenced = False
        self._open = False
        self._held = None
        self.records = 0

    def close(self) -> None:
        """Drop the producer; an open transaction is aborted by the broker or the next owner."""
        producer, self._producer = self._producer, None
        self._open = False
        if producer is not None:
            producer.purge(in_queue=True, in_flight=True)
            producer.flush(1.0)

    def _begun(self) -> Producer:
        """The producer, with a transaction open (begun here if none is: that is local)."""
        producer = self._producer
        if producer is None:
            raise CommitFailed("the worker's producer is not open", aborted=True)
        if not self._open:
            producer.begin_transaction()
            self._open = True
        return producer

    # ---- sending (on the event loop, non-blocking) --------------------------------------

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record in the open transaction (begun on the first send), or hold it for
        the next transaction while the previous one commits."""
        if self._held is not None:
            self._held.append((topic, key, value, headers, partition))
            return
        _produce(self._begun(), topic, key, value, headers, partition)
        self.records += 1

    @property
    def sending(self) -> bool:
        """Whether the open transaction has records; while one commits, whether the next
        has (what is held for it), not the committing one's."""
        if self._held is not None:
            return bool(self._held)
        return self.records > 0

    # ---- overlapping a commit with the next batch (on the event loop) --------------------

    def hold(self) -> None:
        """A commit is about to run: hold what is sent from now on for the next transaction."""
        self._held = []

    def release(self) -> None:
        """The commit has finished: begin the next transaction with what was held."""
        held, self._held = self._held, None
        if not held:
            return
        producer = self._begun()
        for topic, key, value, headers, partition in held:
            _produce(producer, topic, key, value, headers, partition)
        self.records += len(held)

    def discard(self) -> None:
        """The commit failed: what was held was built on it, and is dropped with it."""
        self._held = None

    def _on_failed_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            with self._undelivered_lock:
                self._undelivered.add(f"{message.topic()} ({error.str()})")

    # ---- outcome (blocking: on the Kafka thread) ----------------------------------------

    def commit(self, offsets: list[TopicPartition], group_metadata: object) -> Committed:
        """Commit what was sent together with the next input ``offsets``; returns the records
        sent and how long each step took. Raises :class:`CommitFailed`, after aborting when
        the error allows it.

        The flush before the end serves every record's delivery report (the end's own flush
        then has nothing left to wait for), and confluent-kafka takes the interpreter lock
        for each. While the event loop processes the next batch, each
        report waits for the loop to let go of the lock, so a large transaction commits in
        hundreds of milliseconds instead of tens, and the next one grows meanwhile: under a
        backlog that is the group commit that keeps the worker ahead (BENCHMARKS.md, tenth
        pass, has what serving the reports on the loop instead did)."""
        producer = self._begun()
        sent = self.records
        started = time.monotonic()
        deadline = started + COMMIT_TIMEOUT_S
        try:
            if offsets:
                call_retrying(
                    lambda left: producer.send_offsets_to_transaction(
                        offsets, group_metadata, left
                    ),
                    deadline,
                )
            offsets_sent = time.monotonic()
            # what is still unacknowledged after the deadline fails the end, which waits too
            producer.flush(max(deadline - offsets_sent, 0.0))
            acknowledged = time.monotonic()
            call_retrying(producer.commit_transaction, deadline)
        except KafkaException as exc:
            raise self._failed(exc) from exc
        self._open = False
        self.records = 0
        committed = Committed(
            sent,
            offsets_sent - started,
            acknowledged - offsets_sent,
            time.monotonic() - acknowledged,
        )
        self._begin_next(producer)
        return committed

    def _begin_next(self, producer: Producer) -> None:
        """Begin the next transaction here, on the producer's thread: beginning one takes
        librdkafka's lock and wakes its broker threads, a wait the event loop is spared (it
        would otherwise begin it on the next batch's first record). Nothing reaches the
        broker before a record or offsets are sent in it, so an empty one costs nothing. If
        it cannot begin, the first send tries again, and says why."""
        try:
            producer.begin_transaction()
        except KafkaException as exc:
            log.debug("the next transaction will begin on its first record: %s", exc)
            return
        self._open = True

    def abort(self) -> bool:
        """Abort the open transaction; False when that failed: the producer can then no
        longer be used (:attr:`fenced` says whether another producer fenced it)."""
        producer = self._producer
        self.records = 0
        self._held = None
        if producer is None or not self._open:
            self._open = False
            return True
        try:
            producer.abort_transaction(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("aborting the transaction failed: %s", exc)
            self.fenced = _fencing(exc.args[0])
            return False
        self._open = False
        return True

    def _failed(self, exc: KafkaException) -> CommitFailed:
        error: KafkaError = exc.args[0]
        with self._undelivered_lock:
            undelivered, self._undelivered = sorted(self._undelivered), set()
        detail = f"{error.str()}" + (f"; not delivered: {undelivered}" if undelivered else "")
        if error.txn_requires_abort():
            # librdkafka ends no transaction in that state: it did not commit
            if self.abort():
                return CommitFailed(f"commit failed and was aborted: {detail}", aborted=True)
            if not self.fenced:
                # as when records timed out while the broker was still writing the previous
                # transaction's markers (hundreds of new subscriber topics): the abort then
                # fails with INVALID_TXN_STATE, and the producer is lost, not the outcome
                return CommitFailed(
                    f"commit failed and was not committed, aborting it failed: {detail}",
                    aborted=True,
                    producer_lost=True,
                )
        # fatal (fenced) or unknown: this producer can no longer be trusted with a transaction
        return CommitFailed(f"commit failed, outcome unknown: {detail}", aborted=False)


_FENCING = (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)


def _fencing(error: KafkaError) -> bool:
    """Whether ``error`` says another producer with the same transactional id took over."""
    return error.code() in _FENCING


def _produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    partition: int | None,
) -> None:
    """Queue one record in the producer's open transaction."""
    target = UNASSIGNED if partition is None else partition
    extra: list[tuple[str, str | bytes | None]] | None = list(headers) if headers else None
    while True:
        try:
            # positional arguments, headers only when there are some: about 1 µs less per
            # record than keywords
            if extra is None:
                producer.produce(topic, value, key, target)
            else:
                producer.produce(topic, value, key, target, headers=extra)
            return
        except BufferError:
            # librdkafka's queue is full: let it send before queueing more
            producer.poll(0.05)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() in _TRANSACTION_STATES or error.fatal() or error.txn_requires_abort():
                raise TransactionFailed(
                    f"the transaction takes no more records: {error.str()}"
                ) from exc
            raise


def call_retrying(call: Callable[[float], None], deadline: float) -> None:
    """``call(seconds left)`` again while it fails with an error librdkafka calls retriable
    (``CONCURRENT_TRANSACTIONS`` while the broker still writes the markers of the transaction
    before), until ``deadline`` (``time.monotonic``); then its last error is raised."""
    pause = RETRY_FIRST_S
    while True:
        try:
            call(max(deadline - time.monotonic(), 0.0))
            return
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.retriable() or time.monotonic() + pause >= deadline:
                raise
            log.info("retrying a transaction call that failed with %s", error.str())
        time.sleep(pause)
        pause = min(pause * 2, RETRY_MAX_S)
