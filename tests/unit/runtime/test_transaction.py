"""Retrying a transaction call that librdkafka says may be retried; queueing a record when
librdkafka's queue is full."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from execdist.runtime.transaction import WorkerTransaction, _produce, call_retrying
from execdist.settings import Settings


def concurrent_transactions() -> KafkaException:
    """What ``send_offsets_to_transaction`` raises while the broker still writes the markers
    of the transaction before (seen with 1,000 subscriber topics on a loaded broker)."""
    return KafkaException(
        KafkaError(KafkaError.CONCURRENT_TRANSACTIONS, "concurrent", retriable=True)
    )


def test_a_retriable_failure_is_tried_again_with_the_time_left() -> None:
    lefts: list[float] = []

    def call(left: float) -> None:
        lefts.append(left)
        if len(lefts) < 3:
            raise concurrent_transactions()

    call_retrying(call, time.monotonic() + 5.0)
    assert len(lefts) == 3
    assert 4.0 < lefts[-1] < lefts[0] <= 5.0


def test_a_failure_that_is_not_retriable_is_raised_at_once() -> None:
    calls: list[float] = []

    def call(left: float) -> None:
        calls.append(left)
        raise KafkaException(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True))

    with pytest.raises(KafkaException) as raised:
        call_retrying(call, time.monotonic() + 5.0)
    assert raised.value.args[0].code() == KafkaError._STATE
    assert len(calls) == 1


def test_retrying_stops_at_the_deadline_with_the_last_error() -> None:
    calls: list[float] = []

    def call(left: float) -> None:
        calls.append(left)
        raise concurrent_transactions()

    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        call_retrying(call, started + 0.2)
    assert raised.value.args[0].code() == KafkaError.CONCURRENT_TRANSACTIONS
    assert len(calls) >= 2 and time.monotonic() - started < 0.5


def test_a_record_that_finds_the_queue_full_is_queued_once_there_is_room() -> None:
    """librdkafka's own queue, one record deep, with no broker to send it to: the second
    record waits (``BufferError``) until the first leaves the queue, then is queued, once.
    Purging the queue reports each record it held."""
    purged: list[bytes | None] = []
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:9",  # nothing listens: the records stay queued
            "queue.buffering.max.messages": 1,
            "message.timeout.ms": 60_000,
            "log_level": 0,
            "on_delivery": lambda _error, message: purged.append(message.key()),
        }
    )
    _produce(producer, "orders", b"k1", b"v1", None, 0)
    room = threading.Timer(0.2, lambda: producer.purge(in_queue=True))
    room.start()
    started = time.monotonic()
    _produce(producer, "orders", b"k2", b"v2", [("h", b"1")], None)
    waited = time.monotonic() - started
    room.join()
    assert waited >= 0.15  # it waited for the room rather than drop the record
    producer.purge(in_queue=True)
    producer.flush(1.0)  # serves the purge's reports
    assert purged == [b"k1", b"k2"]


def test_while_a_commit_runs_only_the_next_transactions_records_count_as_sending(
    tmp_path: Path,
) -> None:
    """A punctuation that changed nothing while a commit runs must not make a commit of its
    own out of the committing transaction's records."""
    transaction = WorkerTransaction(Settings(data_dir=tmp_path), "execdist-unit")
    transaction.records = 3  # sent in the transaction about to commit
    assert transaction.sending
    transaction.hold()
    assert not transaction.sending, "the committing transaction's records are not the next's"
    transaction.send("execdist.confirmations", b"K", b"v")
    assert transaction.sending
    transaction.discard()
    assert transaction.sending, "with nothing held, the open transaction's records count"


def test_a_transaction_that_cannot_be_aborted_is_still_known_not_to_have_committed(
    tmp_path: Path,
) -> None:
    """Records that timed out make the transaction abortable: librdkafka ends no transaction
    in that state, so it did not commit, whether or not the abort works. An abort that fails
    (here librdkafka refuses it outright: this producer never initialised its transactions)
    costs the producer, not a rebuild of the tables; a fatal error such as being fenced by
    another producer leaves the outcome open, and is still a rebuild."""
    transaction = WorkerTransaction(Settings(data_dir=tmp_path), "execdist-unit")
    unusable = Producer(
        {"bootstrap.servers": "127.0.0.1:1", "transactional.id": "execdist-unit", "log_level": 0}
    )
    timed_out = KafkaException(
        KafkaError(KafkaError._TIMED_OUT, "4 message(s) timed out", txn_requires_abort=True)
    )

    transaction._producer, transaction._open = unusable, True
    failed = transaction._failed(timed_out)
    assert failed.aborted and failed.producer_lost, failed
    assert not transaction.fenced

    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    failed = transaction._failed(fenced)
    assert not failed.aborted and not failed.producer_lost
