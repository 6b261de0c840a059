"""Numbers every subscriber record: ``sub_seq`` 1, 2, 3 ... per subscription, no gap, no repeat.

Several workers may make records for one subscription (each for the orders of its own
partitions), but only one numbers them: the owner of the subscription's partition of
``execdist-internal.subscriber-route`` (the murmur2 partition of its id; the topic is
co-partitioned with the inputs), which keeps each subscription's last number in the
``execdist-sub-seq`` table. A record is numbered in the transaction that writes it to the
subscriber topic, and the number commits with it, so a crash or rebalance changes nothing a
reader has seen.

* A record of a subscription this worker numbers is numbered at once, in the transaction that
  made it: no extra hop. With one worker, or whenever an order's partition and its
  subscription's meet, a subscriber record costs one exactly-once hop, as before numbering.
* Any other record goes through the route topic, keyed by subscription id, to the worker that
  numbers it (the way Kafka Streams repartitions), and is numbered when that worker reads it.

Each order's records keep their order across both ways. Records routed before this worker
took a route partition, or took the partitions of some orders, may still wait unread in the
route topic; numbering that partition at once could put an order's new record before its older
one. So after every assignment or rollback a route partition is numbered at once only once the
worker has read back a record it routed there itself since: the previous owners' records
(settled before the assignment, KIP-447) all come before that one. Until then its records take
the route topic too, and wait their turn. From then on only the worker's own routed records
can still be unread, and it knows their orders: a record is numbered at once unless its order
(for that subscription) still has a record on the way, which it then follows. So the
partition turns local as soon as its first routed record returns, even while a backlog keeps
the worker busy, and each order's records still go out in the order they were made.
"""

from __future__ import annotations

import itertools
import logging
import struct
import uuid
from collections.abc import Awaitable, Callable

from execdist.codecs.output import SUB_SEQ_HEADER, with_sub_seq
from execdist.domain.routing import SubscriptionIndex
from execdist.runtime.records import InputRecord
from execdist.runtime.transaction import RecordSink
from execdist.tables.store import PartitionedState
from execdist.topics import SUBSCRIBER_ROUTE, KeyPartitions

log = logging.getLogger(__name__)

SetAside = Callable[[InputRecord, str], Awaitable[None]]

_LENGTHS = struct.Struct(">BBH")
"""A routed record's value starts with the lengths of its token, topic and key."""


def pack_routed(token: bytes, topic: str, key: bytes, value: bytes) -> bytes:
    """A subscriber record as it travels on the route topic: the sender's token (empty when
    it does not wait for it), the subscriber topic, the record's key and its value."""
    raw_topic = topic.encode()
    return _LENGTHS.pack(len(token), len(raw_topic), len(key)) + token + raw_topic + key + value


def unpack_routed(packed: bytes) -> tuple[bytes, str, bytes, bytes]:
    """``(token, topic, key, value)`` of a routed record."""
    token_len, topic_len, key_len = _LENGTHS.unpack_from(packed)
    start = _LENGTHS.size
    token = packed[start : start + token_len]
    start += token_len
    topic = packed[start : start + topic_len].decode()
    start += topic_len
    key = packed[start : start + key_len]
    return token, topic, key, packed[start + key_len :]


class SubscriberSequencer:
    """Numbers subscriber records and writes them to their topics (see the module's text).

    The router hands it every record through :meth:`deliver`; the engine feeds it the route
    topic through :meth:`process`.
    """

    def __init__(
        self,
        counters: PartitionedState,
        out: RecordSink,
        index: SubscriptionIndex,
        partitions: int,
        set_aside: SetAside,
    ) -> None:
        self.counters = counters
        self._out = out
        self._index = index
        self._set_aside = set_aside
        self._last: dict[int, dict[str, int]] = {}
        """Each route partition's counters as of the open transaction (a cache of the table)."""
        self._local: set[int] = set()
        """Route partitions numbered here at once (but for orders with a record on the way)."""
        self._unread: dict[int, dict[bytes, tuple[str, bytes]]] = {}
        """Route partition -> token -> (subscription id, key) of each record this worker routed
        there itself since the partition's last release and has not read back yet."""
        self._on_the_way: dict[int, dict[tuple[str, bytes], int]] = {}
        """Route partition -> how many of those unread records each (subscription id, key)
        has: a record of such an order is routed too, behind them."""
        self._route_partition_of = KeyPartitions(partitions).of
        self._instance = uuid.uuid4().hex.encode()
        self._tokens = itertools.count(1)

    def route_partition(self, subscription_id: str) -> int:
        """The route partition of a subscription (murmur2 of its id)."""
        return self._route_partition_of(subscription_id)

    def deliver(self, subscription_id: str, topic: str, key: bytes, value: bytes) -> None:
        """Write one subscriber record (its value encoded, not yet numbered): numbered now if
        this worker may, else routed to the worker that numbers the subscription."""
        partition = self._route_partition_of(subscription_id)
        if partition in self._local:
            on_the_way = self._on_the_way.get(partition)
            if not on_the_way or (subscription_id, key) not in on_the_way:
                self._number(partition, subscription_id, topic, key, value)
                return
        order = (subscription_id, key)
        token = b""
        if self.counters.holds(partition):
            token = b"%s:%d" % (self._instance, next(self._tokens))
            self._unread.setdefault(partition, {})[token] = order
            on_the_way = self._on_the_way.setdefault(partition, {})
            on_the_way[order] = on_the_way.get(order, 0) + 1
        self._out.send(
            SUBSCRIBER_ROUTE,
            subscription_id.encode(),
            pack_routed(token, topic, key, value),
            partition=partition,
        )

    async def process(self, record: InputRecord) -> None:
        """Number one routed record; the first one this worker routed here itself since the
        partition's last release makes the partition local."""
        if record.key is None or record.value is None:
            return  # internal topic: only workers write it, always with key and value
        token, topic, key, value = unpack_routed(record.value)
        subscription_id = record.key.decode()
        partition = record.partition
        if self._index.get(subscription_id) is not None:
            self._number(partition, subscription_id, topic, key, value)
        else:
            log.debug("subscription %s is gone; a record routed to it is dropped", subscription_id)
        if not token:
            return
        order = self._unread.get(partition, {}).pop(token, None)
        if order is None:
            return  # another worker's, or routed before a release
        self._local.add(partition)
        on_the_way = self._on_the_way[partition]
        left = on_the_way[order] - 1
        if left:
            on_the_way[order] = left
        else:
            del on_the_way[order]

    async def set_aside(self, record: InputRecord, error: str) -> None:
        """A routed record that cannot be numbered goes the join's dead-letter way."""
        await self._set_aside(record, error)

    def release(self, partition: int) -> None:
        """The partition's uncommitted work was dropped or it left: its counters are read
        from the table again, and it is local again only after a routed record read back."""
        self._last.pop(partition, None)
        self._local.discard(partition)
        self._unread.pop(partition, None)
        self._on_the_way.pop(partition, None)

    def last_sub_seq(self, subscription_id: str) -> int | None:
        """The last committed ``sub_seq`` of a subscription numbered here (``None`` if this
        worker does not number it or it has no record yet)."""
        raw = self.counters.lookup(subscription_id.encode())
        return None if raw is None else int(raw)

    def _number(
        self, partition: int, subscription_id: str, topic: str, key: bytes, value: bytes
    ) -> None:
        counters = self._last.get(partition)
        if counters is None:
            counters = self._last[partition] = {}
        last = counters.get(subscription_id)
        if last is None:
            raw = self.counters.get(partition, subscription_id.encode())
            last = 0 if raw is None else int(raw)
        sub_seq = last + 1
        counters[subscription_id] = sub_seq
        digits = b"%d" % sub_seq
        self.counters.put(partition, subscription_id.encode(), digits)
        self._out.send(topic, key, with_sub_seq(value, sub_seq), headers=[(SUB_SEQ_HEADER, digits)])
