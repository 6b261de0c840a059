"""InputContinuity: each input record admitted at most once, in offset order, per partition,
and the next offsets written to the state."""

from __future__ import annotations

import orjson

from execdist import topics
from execdist.agents.continuity import InputContinuity
from execdist.topics import TP

ORDERS_0 = (topics.ORDERS, 0)
EXECUTIONS_0 = (topics.EXECUTIONS, 0)
ORDERS_1 = (topics.ORDERS, 1)


class Store:
    """Stands in for the timers table: one dict per partition."""

    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.data.setdefault(partition, {})[key] = value


def continuity(store: Store | None = None) -> InputContinuity:
    return InputContinuity(store or Store())  # type: ignore[arg-type]


def test_records_are_admitted_once_in_offset_order_and_holes_are_accepted() -> None:
    admitted = continuity()
    assert admitted.admit(ORDERS_0, 0)
    assert admitted.admit(ORDERS_0, 1)
    assert not admitted.admit(ORDERS_0, 1)  # a re-delivery
    assert not admitted.admit(ORDERS_0, 0)
    assert admitted.admit(ORDERS_0, 5)  # a hole: markers or aborted records
    assert admitted.admit(EXECUTIONS_0, 0)  # each topic and partition on its own
    assert admitted.admit(ORDERS_1, 0)
    assert (admitted.redeliveries_skipped, admitted.holes_seen) == (2, 1)
    assert admitted.next_offset(ORDERS_0) == 6


def test_the_next_offsets_are_flushed_per_partition_and_read_back_after_forget() -> None:
    store = Store()
    admitted = continuity(store)
    admitted.admit(ORDERS_0, 3)
    admitted.admit(EXECUTIONS_0, 7)
    admitted.admit(ORDERS_1, 2)
    admitted.flush(0)
    assert orjson.loads(store.data[0][b"offsets:0"]) == {topics.ORDERS: 4, topics.EXECUTIONS: 8}
    assert 1 not in store.data
    admitted.forget(0)
    assert admitted.stored(0) == {topics.ORDERS: 4, topics.EXECUTIONS: 8}
    assert not admitted.admit(ORDERS_0, 3)  # applied already, as the state says
    assert admitted.admit(EXECUTIONS_0, 8)
    assert admitted.next_offset(ORDERS_1) == 3  # not forgotten


def test_flush_keeps_the_offsets_of_topics_not_processed_since() -> None:
    store = Store()
    store.put(0, b"offsets:0", orjson.dumps({topics.ORDERS: 10, topics.EXECUTIONS: 20}))
    admitted = continuity(store)
    assert admitted.admit(EXECUTIONS_0, 20)
    admitted.flush(0)
    assert orjson.loads(store.data[0][b"offsets:0"]) == {topics.ORDERS: 10, topics.EXECUTIONS: 21}
    store.data.clear()
    admitted.flush(0)  # nothing admitted since: nothing written
    assert store.data == {}


def test_a_named_topic_partition_finds_the_same_entry_as_a_plain_tuple() -> None:
    admitted = continuity()
    assert admitted.admit(ORDERS_0, 0)
    assert not admitted.admit(TP(*ORDERS_0), 0)
    assert admitted.next_offset(TP(*ORDERS_0)) == 1
    assert admitted.next_offset((topics.ORDERS, 9)) is None
