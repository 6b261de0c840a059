"""Which input partitions are read to their end: what a poll shows, and what undoes it."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from execdist.runtime.read_to_end import InputEnds, split_polled
from execdist.runtime.records import InputRecord


def record(topic: str, partition: int, offset: int) -> Message:
    return Message(
        topic=topic, partition=partition, offset=offset, key=b"k", value=b"v", timestamp=(1, 5000)
    )


def end(topic: str, partition: int, offset: int) -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        error=KafkaError(KafkaError._PARTITION_EOF),
    )


def test_records_keep_their_order_and_fields_and_end_events_are_not_records() -> None:
    records, changes = split_polled(
        [record("orders", 0, 7), end("orders", 0, 9), record("executions", 1, 3)]
    )

    assert records == [
        InputRecord("orders", 0, 7, b"k", b"v", 5.0),
        InputRecord("executions", 1, 3, b"k", b"v", 5.0),
    ]
    # offset 8 was a transaction marker: the end event still says the partition is read
    assert changes == {("orders", 0): True, ("executions", 1): False}


def test_a_record_after_the_end_event_means_more_arrived() -> None:
    _, changes = split_polled(
        [end("orders", 0, 4), record("orders", 1, 0), record("orders", 0, 4), end("orders", 1, 1)]
    )

    assert changes == {("orders", 0): False, ("orders", 1): True}


def test_other_consumer_errors_are_skipped_and_change_nothing() -> None:
    failure = Message(
        topic="orders", partition=2, error=KafkaError(KafkaError._TRANSPORT, "broker down")
    )

    records, changes = split_polled([failure])

    assert records == [] and changes == {}


def nothing_processed(tp: tuple[str, int]) -> int | None:
    return None


def test_a_partition_is_read_to_its_end_only_with_nothing_of_it_waiting() -> None:
    ends = InputEnds()
    ends.polled({("orders", 0): True, ("executions", 0): True, ("orders", 1): True})
    topics = ("orders", "executions")

    def read(partition: int, waiting: set[tuple[str, int]]) -> frozenset[str]:
        return ends.read_to_end(partition, topics, waiting, {}, nothing_processed)

    assert read(0, set()) == {"orders", "executions"}
    assert read(1, set()) == {"orders"}, "executions 1: no end seen"
    assert read(0, {("orders", 0)}) == {"executions"}, "polled, not processed yet"

    ends.polled({("orders", 0): False})  # a record came in after the end
    assert read(0, set()) == {"executions"}


def test_a_partition_written_to_all_the_time_is_read_once_its_watermark_is_processed() -> None:
    """Its fetches rarely come back empty, so it seldom gets an end event: what counts is
    whether the records processed reach the watermark of the last fetch (a commit marker may
    stay one offset beyond them)."""
    ends = InputEnds()
    ends.polled({("orders", 0): False, ("executions", 0): False})
    highs = {("orders", 0): 5_000, ("executions", 0): 20_001}
    processed = {("orders", 0): 4_000, ("executions", 0): 20_000}

    def read(*waiting: tuple[str, int]) -> frozenset[str]:
        return ends.read_to_end(0, ("orders", "executions"), set(waiting), highs, processed.get)

    assert read() == {"executions"}, "1,000 orders behind; the executions' marker is not"
    processed[("orders", 0)] = 5_000
    assert read() == {"orders", "executions"}
    assert read(("executions", 0)) == {"orders"}, "polled records wait for processing"
    highs[("orders", 0)] = 5_200  # a later fetch brought more
    assert read() == {"executions"}


def test_forgetting_partitions_makes_their_ends_unknown_until_reached_again() -> None:
    ends = InputEnds()
    ends.polled({("orders", 0): True, ("orders", 1): True, ("orders", 2): True})

    def read(partition: int) -> bool:
        return bool(ends.read_to_end(partition, ["orders"], set(), {}, nothing_processed))

    ends.forget([1])
    assert [read(p) for p in range(3)] == [True, False, True]

    ends.forget()  # everything is read again from the last commit
    assert [read(p) for p in range(3)] == [False] * 3

    ends.polled({("orders", 1): True})
    assert read(1)
