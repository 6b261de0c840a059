"""The tables of execdist and what they hold.

All are RocksDB databases (rocksdict), one per table and partition, partitioned like the input
topics; values are bytes written by :class:`~execdist.tables.store.PartitionedState`. Their
changelog is one compacted topic for all of them, ``<app id>-tables-changelog``, partitioned
like the inputs, each record's key the table's tag (one letter, :data:`TAGS`) and then the
table's key: a transaction then writes to one changelog partition per input partition, not
six. librdkafka sends a produce request per partition and the broker checks each partition's
first write in a transaction with the coordinator (KIP-890): on this project's 2-core
development machine, a worker at 100 executions/s commits in 5.2-5.5 ms instead of 6.7-8.5
(BENCHMARKS.md, eighth pass).
A deployment that already has a changelog topic per table (``<app id>-<table>-changelog``,
every version before 2026-11-30) keeps them: :func:`table_specs` with ``shared=False``.

* ``execdist-order-state``: per order_id, the join's :class:`~execdist.domain.OrderState` as
  JSON. An order is deleted ``EXECDIST_ORDER_RETENTION_S`` (default 7 days) after its last
  activity once nothing is held for it, so state stays bounded by the recent order flow.
* ``execdist-timers``: ``due:<order_id>`` for every order with a pending gap or orphan timeout,
  holding when it is due, so a tick touches only those; and ``offsets:<partition>``, the next
  input offset of each input topic, written in the same transaction as the effects it describes.
* ``execdist-positions``: per account, bought and sold quantity and notional per symbol.
* ``execdist-confirmation-history``: every confirmation of an order, as published, under
  :func:`history_key` (the order id, then the seq, so a prefix scan reads them in seq order);
  deleted with the order's state.
* ``execdist-sub-seq``: per subscription id, the last ``sub_seq`` given to one of its records
  (decimal ASCII), in the partition of ``execdist-internal.subscriber-route`` the id falls in.
* ``execdist-anomaly-stats``: ``symbol:<symbol>`` and ``account:<account>``, the recent fills
  the anomaly rules judge by (:class:`~execdist.domain.anomalies.RecentFills` as JSON), learnt
  from the executions of the partition.

RocksDB's block cache defaults to 2 GiB per database; the worker shares one cache of
``BLOCK_CACHE_BYTES`` between all of its databases, and one budget of ``WRITE_BUFFER_BYTES``
for all of their memtables, so its memory does not grow with the partitions it owns.
"""

from __future__ import annotations

from dataclasses import dataclass

ORDER_STATE = "execdist-order-state"
TIMERS = "execdist-timers"
POSITIONS = "execdist-positions"
HISTORY = "execdist-confirmation-history"
SUB_SEQ = "execdist-sub-seq"
ANOMALY_STATS = "execdist-anomaly-stats"

BLOCK_CACHE_BYTES = 16 * 1024 * 1024
"""Blocks read from every database of a worker together. The join keeps the order states it
works on decoded (:mod:`execdist.agents.hot_states`), so the cache serves the rarer reads
(timers, states of orders gone quiet). A quiet worker fills it within minutes; 64 MB was
still filling after 30 minutes at 100 inputs/s, its memory growing all the while."""
WRITE_BUFFER_BYTES = 16 * 1024 * 1024
"""Memtables of every database of a worker together (RocksDB's write buffer manager, as
Kafka Streams' bounded-memory configuration does): without it each database may hold two
write buffers of its own, up to 2 x 8 MB times tables times partitions, which a worker
fills slowly at low rates and looks like growing memory."""
ARENA_BLOCK_BYTES = 64 * 1024
"""Memory a memtable takes from the budget at a time. RocksDB's default is an eighth of the
write buffer (1 MB here), and every database's memtable holds at least one block: with six
tables over four partitions that alone is past ``WRITE_BUFFER_BYTES``, so the manager flushed
a database at nearly every commit (a worker at 100 inputs/s wrote some 60 files a second, and
a commit cost 79 µs of RocksDB CPU instead of 36)."""

MAX_VALUE_BYTES = 8 * 1024 * 1024
"""Largest table value (and changelog record) a worker writes. An order's state grows with its
fills (about 200 bytes each) and holds the original bytes of every execution waiting for it,
so it may pass Kafka's default of 1 MB; the changelog topics and the pipeline's producers allow
this much."""


TAGS = {
    ORDER_STATE: b"o",
    TIMERS: b"t",
    POSITIONS: b"p",
    HISTORY: b"h",
    SUB_SEQ: b"s",
    ANOMALY_STATS: b"a",
}
"""What comes before a table's keys in the shared changelog. Never reuse a letter: compaction
and restore tell the tables apart by it."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    changelog_topic: str
    changelog_tag: bytes = b""
    """Prefix of the table's keys in its changelog: the table's tag in the shared changelog,
    nothing in a changelog of its own."""
    write_buffer_bytes: int = 8 * 1024 * 1024
    max_open_files: int = 256


def shared_changelog_topic(app_id: str) -> str:
    return f"{app_id}-tables-changelog"


def own_changelog_topic(app_id: str, table: str) -> str:
    """The changelog of one table, in deployments that began before the shared changelog."""
    return f"{app_id}-{table}-changelog"


def table_specs(app_id: str, *, shared: bool = True) -> list[TableSpec]:
    """Every table; with ``shared`` their changelog is the one shared topic, else each its own."""
    if shared:
        topic = shared_changelog_topic(app_id)
        return [TableSpec(name, topic, tag) for name, tag in TAGS.items()]
    return [TableSpec(name, own_changelog_topic(app_id, name)) for name in TAGS]


def has_own_changelogs(app_id: str, existing_topics: set[str]) -> bool:
    """Whether the deployment of ``app_id`` began with a changelog per table (it keeps them:
    restoring from both layouts could bring back keys whose deletion compaction has removed)."""
    return any(own_changelog_topic(app_id, name) in existing_topics for name in TAGS)


def history_prefix(order_id: str) -> bytes:
    """The start of every history key of ``order_id``, and of no other order's (the id's length
    comes first, so one id that begins with another cannot match)."""
    raw = order_id.encode()
    return b"%05d%s" % (len(raw), raw)


def history_key(order_id: str, seq: int) -> bytes:
    """Key of the confirmation of ``order_id``'s execution ``seq``: keys sort by seq (its
    number of digits comes first)."""
    digits = str(seq).encode()
    return b"%s%03d%s" % (history_prefix(order_id), len(digits), digits)
