"""Topic names of the external contract and of execdist's own internal topics.

``orders``, ``executions`` and every internal topic that the join reads share one partition
count (``EXECDIST_TOPIC_PARTITIONS``) so that they are co-partitioned: partition N of each is
owned by the same worker, and so is partition N of the tables' changelogs.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

ORDERS = "orders"
EXECUTIONS = "executions"
CONFIRMATIONS = "execdist.confirmations"
STATUS = "execdist.status"
DLQ = "execdist.dlq"
SUBSCRIBER_PREFIX = "execdist.sub."

POSITIONS_BY_ACCOUNT = "execdist-internal.positions-by-account"
"""Internal: position changes repartitioned by account, so positions live in a table keyed by
account."""
SUBSCRIBER_ROUTE = "execdist-internal.subscriber-route"
"""Internal: subscriber records on their way to the worker that numbers their subscription
(``sub_seq``), keyed and partitioned by subscription id; see
:mod:`execdist.agents.sequencing`."""
SUBSCRIPTIONS = "execdist-internal.subscriptions"
"""Internal, compacted: every subscription's latest version, keyed by id; read by all workers."""
SUBSCRIPTION_AUDIT = "execdist-internal.subscription-audit"
"""Internal, append-only and kept forever: one record per change to a subscription (who, when,
before and after), keyed by subscription id, written in the change's own transaction. Not
compacted, so a subscription's deletion leaves its history in place."""
WORKERS = "execdist-internal.workers"
"""Internal, compacted: each worker's latest report (partitions, delivery figures), keyed by
worker id; read by all workers to answer the cluster-wide status queries."""


def subscriber_topic(subscription_id: str) -> str:
    """The topic that carries one subscription's confirmations."""
    return SUBSCRIBER_PREFIX + subscription_id


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``key`` in (murmur2, as in Java)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitions:
    """:func:`key_partition` of text keys, remembered: computing it costs some 4 µs of Python
    per record otherwise. Bounded whatever the number of keys."""

    LIMIT = 100_000

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._known: dict[str, int] = {}

    def of(self, key: str) -> int:
        partition = self._known.get(key)
        if partition is None:
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            partition = self._known[key] = key_partition(key.encode(), self._partitions)
        return partition


TP = TopicPartition
"""A topic partition (topic, partition): which partition's transaction a record belongs to."""
