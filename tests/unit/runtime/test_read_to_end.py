"""How far behind its input partitions the worker is: what polls and batches show, and what
undoes it."""

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
    records, ends = split_polled(
        [record("orders", 0, 7), end("orders", 0, 9), record("executions", 1, 3)]
    )

    assert records == [
        InputRecord("orders", 0, 7, b"k", b"v", 5.0),
        InputRecord("executions", 1, 3, b"k", b"v", 5.0),
    ]
    assert ends == {("orders", 0): 9}, "offset 8 was a commit marker: the end is past it"


def test_the_last_end_event_of_a_partition_counts_and_other_errors_are_skipped() -> None:
    failure = Message(
        topic="orders", partition=2, error=KafkaError(KafkaError._TRANSPORT, "broker down")
    )

    records, ends = split_polled(
        [end("orders", 0, 4), record("orders", 0, 4), end("orders", 0, 6), failure]
    )

    assert [r.offset for r in records] == [4]
    assert ends == {("orders", 0): 6}


def nothing_processed(tp: tuple[str, int]) -> int | None:
    return None


TOPICS = ("orders", "executions")
NOW = 1_700_000_000.0


def test_a_quiet_partition_is_read_once_its_end_event_is_at_the_watermark() -> None:
    """Its last entries may be commit markers or an aborted transaction, which no record
    processed ever reaches: the end event says nothing more is there."""
    ends = InputEnds()
    ends.polled({("orders", 0): 9, ("executions", 0): 4})
    highs = {("orders", 0): 9, ("executions", 0): 4}

    def behind(*waiting: tuple[str, int]) -> dict[str, float]:
        return ends.behind(0, TOPICS, set(waiting), highs, nothing_processed, NOW)

    assert behind() == {"orders": 0, "executions": 0}
    assert behind(("orders", 0)) == {"executions": 0}, "polled, not processed yet"
    highs[("executions", 0)] = 300  # fetched after the end event, not polled yet
    assert behind() == {"orders": 0}
    assert ends.behind(1, TOPICS, set(), highs, nothing_processed, NOW) == {}, "no watermark"


def test_a_partition_written_to_all_the_time_is_read_once_its_watermark_is_processed() -> None:
    """Its fetches rarely come back empty, so it seldom gets an end event: what counts is
    whether the records processed reach the watermark."""
    ends = InputEnds()
    highs = {("orders", 0): 5_000, ("executions", 0): 20_000}
    processed = {("orders", 0): 4_000, ("executions", 0): 20_000}
    ends.processed({("orders", 0): NOW - 600, ("executions", 0): NOW - 600})

    def behind(*waiting: tuple[str, int]) -> dict[str, float]:
        return ends.behind(0, TOPICS, set(waiting), highs, processed.get, NOW)

    assert behind() == {"orders": 600, "executions": 0}, "1,000 orders behind, written since"
    processed[("orders", 0)] = 5_000
    assert behind() == {"orders": 0, "executions": 0}
    assert behind(("executions", 0)) == {"orders": 0, "executions": 600}, "polled, not processed"
    highs[("orders", 0)] = 5_200  # a later fetch brought more
    assert behind() == {"orders": 600, "executions": 0}


def test_one_offset_short_of_the_watermark_is_not_read_until_an_end_event_says_so() -> None:
    """The last offset may be a transaction's commit marker, or a last record not polled yet
    (written alone, it often comes in a fetch of its own): the join's orphan timeout must not
    be judged before the order that settles it. The end event after a marker tells them
    apart."""
    ends = InputEnds()
    highs = {("orders", 0): 80_002}
    processed = {("orders", 0): 80_001}
    ends.processed({("orders", 0): NOW - 14})

    def behind() -> dict[str, float]:
        return ends.behind(0, ["orders"], set(), highs, processed.get, NOW)

    assert behind() == {"orders": 14}, "the last record may not be polled yet"
    ends.polled({("orders", 0): 80_002})  # it was a marker: the fetch found nothing past it
    assert behind() == {"orders": 0}


def test_after_an_assignment_a_watermark_counts_once_the_partition_is_fetched_again() -> None:
    """Until the consumer's first fetch of a partition assigned to it returns, the watermark it
    reports may be cached from an earlier ownership, and lower than what has been written
    since: a record of the partition processed, or an end event, shows that the fetch came."""
    ends = InputEnds()
    stale = {("orders", 0): 1_000}
    committed = {("orders", 0): 5_000}  # where another worker left it

    def behind(highs: dict[tuple[str, int], int]) -> dict[str, float]:
        return ends.behind(0, ["orders"], set(), highs, committed.get, NOW)

    assert behind(stale) == {}, "not known yet"
    ends.processed({("orders", 0): NOW - 30})  # the first fetch brought a record: high is fresh
    committed[("orders", 0)] = 5_001
    assert behind({("orders", 0): 9_000}) == {"orders": 30}
    assert behind({("orders", 0): 5_001}) == {"orders": 0}

    ends.forget([0])  # assigned once more
    ends.polled({("orders", 0): 5_001})
    assert behind({("orders", 0): 5_001}) == {"orders": 0}, "an end event is as good"


def test_short_of_the_end_the_worker_is_as_far_behind_as_its_newest_record_processed_is_old() -> (
    None
):
    """Whatever is not processed was written after the newest record processed: under a steady
    flow that is the worker's own latency; in a backlog, the backlog's age."""
    ends = InputEnds()
    highs = {("orders", 0): 5_000, ("executions", 0): 20_000}
    processed = {("orders", 0): 4_990, ("executions", 0): 20_000}
    ends.processed({("orders", 0): NOW - 0.25, ("executions", 0): NOW - 90})

    def behind(*waiting: tuple[str, int]) -> dict[str, float]:
        return ends.behind(0, TOPICS, set(waiting), highs, processed.get, NOW)

    assert behind() == {"orders": 0.25, "executions": 0}, "the executions are read to the end"
    assert behind(("executions", 0)) == {"orders": 0.25, "executions": 90}
    ends.processed({("orders", 0): NOW - 0.125})  # a later batch
    assert behind()["orders"] == 0.125
    ends.processed({("orders", 0): NOW + 60})  # a producer's clock running ahead
    assert behind()["orders"] == 0


def test_forgetting_partitions_makes_how_far_behind_them_unknown_until_learnt_again() -> None:
    ends = InputEnds()
    ends.polled({("orders", 0): 3, ("orders", 1): 3, ("orders", 2): 3})
    ends.processed({("executions", p): NOW - 1 for p in range(3)})
    highs = {("orders", p): 3 for p in range(3)}

    def behind(partition: int) -> dict[str, float]:
        return ends.behind(partition, TOPICS, set(), highs, nothing_processed, NOW)

    ends.forget([1])
    kept = {"orders": 0, "executions": 1}
    assert [behind(p) for p in range(3)] == [kept, {}, kept]

    ends.forget()  # everything is read again from the last commit
    assert [behind(p) for p in range(3)] == [{}] * 3

    ends.polled({("orders", 1): 3})
    assert behind(1) == {"orders": 0}
