"""Partition-local state whose changelog writes join the source partition's transaction.

Faust tables give us RocksDB storage per partition, changelog topics and recovery when
partitions move. Their ``__setitem__`` however queues the changelog record in a background
buffer that a transaction commit does not wait for, so an update could land in the *next*
transaction. :class:`PartitionedState` writes the RocksDB value and awaits the hand-over of the
changelog record to the source partition's transactional producer before the input is acked:
state, outputs and offsets then commit together.
"""

from __future__ import annotations

from collections.abc import Iterator

from faust.tables.table import Table
from faust.types import TP

from execdist.agents.publishing import TransactionalPublisher

FAUST_INTERNAL_PREFIX = b"__faust\0"


class PartitionedState:
    """Bytes in, bytes out, one RocksDB per partition, changelog written transactionally."""

    def __init__(self, table: Table, publisher: TransactionalPublisher) -> None:
        self.table = table
        self._publisher = publisher

    @property
    def changelog_topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def _db(self, partition: int):  # type: ignore[no-untyped-def]
        return self.table.data._db_for_partition(partition)

    def get(self, partition: int, key: bytes) -> bytes | None:
        value = self._db(partition).get(key)
        return None if value is None else bytes(value)

    def lookup(self, key: bytes) -> bytes | None:
        """Find ``key`` in whichever local partition holds it (for queries outside an event)."""
        for db in list(self.table.data._dbs.values()):
            value = db.get(key)
            if value is not None:
                return bytes(value)
        return None

    async def put(self, source: TP, key: bytes, value: bytes) -> None:
        self._db(source.partition).put(key, value)
        await self._publisher.send(
            source, self.changelog_topic, key, value, partition=source.partition
        )

    async def delete(self, source: TP, key: bytes) -> None:
        self._db(source.partition).delete(key)
        await self._publisher.send(
            source, self.changelog_topic, key, None, partition=source.partition
        )

    def keys_from(self, partition: int, start: bytes | None, limit: int) -> Iterator[bytes]:
        """Up to ``limit`` keys of one partition in key order, starting after ``start``."""
        db = self._db(partition)
        it = db.iter()
        if start is None:
            it.seek_to_first()
        else:
            it.seek(start)
            if it.valid() and bytes(it.key()) == start:
                it.next()
        count = 0
        while it.valid() and count < limit:
            key = bytes(it.key())
            it.next()
            if key.startswith(FAUST_INTERNAL_PREFIX):
                continue  # Faust keeps the persisted changelog offset beside our keys
            yield key
            count += 1
