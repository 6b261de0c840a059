"""The order a partition's records are processed in across one processor's topics: by
timestamp, waiting for a fetch that may bring an earlier record, and never for long."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from execdist.runtime.ordering import MAX_HELD, MAX_HOLD_S, SourceOrder
from execdist.runtime.read_to_end import InputEnds
from execdist.runtime.records import InputRecord

JOIN, SEQUENCER = object(), object()
SOURCES = {"orders": JOIN, "executions": JOIN, "route": SEQUENCER}


def rec(topic: str, offset: int, timestamp: float | None, partition: int = 0) -> InputRecord:
    return InputRecord(topic, partition, offset, b"k", b"v", timestamp)


def names(records: list[InputRecord]) -> list[str]:
    return [f"{r.topic[0]}{r.partition}@{r.offset}" for r in records]


def at_end(*tps: tuple[str, int]) -> Callable[[tuple[str, int]], bool]:
    return lambda tp: tp in tps


def test_one_processors_topics_go_by_timestamp_each_in_its_own_offset_order() -> None:
    order = SourceOrder(SOURCES)
    polled = [
        rec("orders", 0, 10.0),
        rec("orders", 1, 30.0),  # an amendment written after both executions
        rec("executions", 0, 20.0),
        rec("executions", 1, 5.0),  # a producer clock behind: still after offset 0
        rec("executions", 2, 25.0),
    ]

    ready = order.arrange(polled, at_end(("orders", 0), ("executions", 0)), now=0.0)

    assert names(ready) == ["o0@0", "e0@0", "e0@1", "e0@2", "o0@1"]


def test_equal_timestamps_go_in_the_topologys_source_order() -> None:
    ready = SourceOrder(SOURCES).arrange(
        [rec("executions", 0, 7.0), rec("orders", 0, 7.0)], at_end(), now=0.0
    )
    assert names(ready[:1]) == ["o0@0"]


def test_three_topics_of_one_processor_go_by_timestamp_and_source_order_as_each_runs_out() -> None:
    order = SourceOrder({"c": JOIN, "a": JOIN, "b": JOIN})
    polled = [
        rec("a", 0, 2.0),
        rec("a", 1, 4.0),
        rec("b", 0, 2.0),
        rec("b", 1, 9.0),
        rec("b", 2, 1.0),
        rec("c", 0, None),
        rec("c", 1, 4.0),
    ]

    ready = order.arrange(polled, at_end(("a", 0), ("b", 0), ("c", 0)), now=0.0)

    # c@0 has no timestamp (0), then a tie at 2 (a before b: the source order), one at 4 (c
    # first), then the records of b, the last topic left, in their offset order
    assert names(ready) == ["c0@0", "a0@0", "b0@0", "c0@1", "a0@1", "b0@1", "b0@2"]


def test_what_one_topic_has_left_goes_once_the_others_are_fetched_to_their_end() -> None:
    order = SourceOrder(SOURCES)
    polled = [rec("orders", 0, 5.0), *(rec("executions", n, float(n)) for n in range(4))]

    held_back = order.arrange(polled, at_end(), now=0.0)
    assert names(held_back) == ["e0@0", "e0@1", "e0@2", "e0@3"]
    assert order.arrange([], at_end(), now=0.0) == [], "the order waits for the next execution"

    ready = order.arrange([], at_end(("executions", 0)), now=0.0)
    assert names(ready) == ["o0@0"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["orders", "executions"]),
            st.one_of(st.none(), st.integers(0, 6).map(float)),
        ),
        max_size=30,
    )
)
def test_a_partition_fetched_to_its_end_goes_as_a_merge_of_its_topics(
    polled_topics: list[tuple[str, float | None]],
) -> None:
    polled = [rec(topic, offset, stamp) for offset, (topic, stamp) in enumerate(polled_topics)]
    queues = {topic: [r for r in polled if r.topic == topic] for topic in ("orders", "executions")}
    expected = []
    while any(queues.values()):
        # the earliest head goes next; on a tie, the topic first in the topology's sources
        topic = min(
            (topic for topic, queue in queues.items() if queue),
            key=lambda topic: (queues[topic][0].timestamp or 0.0, list(SOURCES).index(topic)),
        )
        expected.append(queues[topic].pop(0))

    ready = SourceOrder(SOURCES).arrange(polled, at_end(("orders", 0), ("executions", 0)), now=0.0)

    assert ready == expected


def test_records_wait_for_a_fetch_that_may_bring_an_earlier_one() -> None:
    order = SourceOrder(SOURCES)

    first = order.arrange([rec("orders", 0, 30.0)], at_end(), now=0.0)
    assert first == [], "the executions' partition may still hold something earlier"
    assert order.held() == {("orders", 0)}

    then = order.arrange([rec("executions", 0, 20.0)], at_end(), now=0.05)
    assert names(then) == ["e0@0"], "the earlier execution first; the order waits for the next"

    last = order.arrange([], at_end(("executions", 0)), now=0.1)
    assert names(last) == ["o0@0"], "nothing more to fetch of the executions: the order goes"
    assert order.held() == set()


def test_a_fetch_that_does_not_come_holds_the_others_back_for_a_while_at_most() -> None:
    order = SourceOrder(SOURCES)
    assert order.arrange([rec("orders", 0, 1.0), rec("orders", 1, 2.0)], at_end(), 100.0) == []
    assert order.arrange([], at_end(), 100.0 + MAX_HOLD_S - 0.01) == []

    ready = order.arrange([], at_end(), 100.0 + MAX_HOLD_S)

    assert names(ready) == ["o0@0", "o0@1"], "everything held goes, in order"


def test_fewer_than_max_held_records_of_a_partition_wait() -> None:
    order = SourceOrder(SOURCES)
    backlog = [rec("orders", offset, float(offset)) for offset in range(MAX_HELD + 5)]

    ready = order.arrange(backlog, at_end(), now=0.0)

    assert names(ready) == [f"o0@{offset}" for offset in range(6)], "the oldest go"


def test_other_processors_topics_and_partitions_are_not_held() -> None:
    order = SourceOrder(SOURCES)
    ready = order.arrange(
        [rec("orders", 0, 9.0, partition=1), rec("route", 0, 50.0), rec("route", 1, 1.0)],
        at_end(),
        now=0.0,
    )
    assert names(ready) == ["r0@0", "r0@1"], "the route's records never wait for the join's"
    assert order.held() == {("orders", 1)}


def test_forgetting_a_partition_drops_what_is_held_of_it_and_its_fetch_positions() -> None:
    order = SourceOrder(SOURCES)
    order.arrange([rec("orders", 4, 1.0, 0), rec("orders", 8, 1.0, 1)], at_end(), now=0.0)

    order.forget([0])

    assert order.held() == {("orders", 1)}
    assert order.fetched(("orders", 0)) is None and order.fetched(("orders", 1)) == 9
    order.forget()
    assert order.held() == set() and order.fetched(("orders", 1)) is None


def test_a_partition_is_fetched_to_its_end_by_its_end_event_or_watermark() -> None:
    ends = InputEnds()
    tp = ("executions", 0)

    assert not ends.fetched_to_end(tp, None, {tp: 0}), "nothing fetched: the watermark may be stale"
    assert ends.fetched_to_end(tp, 10, {tp: 10})
    assert not ends.fetched_to_end(tp, 10, {tp: 11}), "one more record, or a commit marker"
    assert not ends.fetched_to_end(tp, 10, {})

    ends.polled({tp: 12})
    assert ends.fetched_to_end(tp, 10, {tp: 40}), "an end event past it: a marker, say"
    assert ends.fetched_to_end(tp, None, {}), "an end event since it was assigned"
    assert not ends.fetched_to_end(tp, 13, {tp: 40}), "fetched past that end since"
