"""Partition-local tables: RocksDB (rocksdict) per table and partition, a changelog per table.

What each table holds is described in :mod:`execdist.tables.declarations`.

Writes made while an input batch is processed go to a per-partition *overlay* first and are
sent to the table's changelog inside the partition's Kafka transaction. Only when that
transaction has committed is the overlay written to RocksDB, in one atomic write batch; if the
transaction aborts the overlay is dropped. RocksDB therefore only ever holds committed state,
and a record that is processed again after an abort meets the state it met the first time.

A partition newly assigned to this worker starts from an empty database restored from the
committed changelog (:func:`restore`), the way Kafka Streams recovers a task after an unclean
stop: local files may be older than the changelog, or left behind by another incarnation.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition

from execdist.tables.declarations import TableSpec
from execdist.topics import TP

log = logging.getLogger(__name__)

Send = Callable[[int, str, bytes, bytes | None], Awaitable[None]]
"""Sends one changelog record (partition, topic, key, value or tombstone) in the partition's
open transaction."""

RESTORE_TIMEOUT_S = 600.0
_DELETED = object()


class RocksTables:
    """Opens, closes and wipes the RocksDB databases of every table, per partition."""

    def __init__(self, root: Path, specs: list[TableSpec], block_cache_bytes: int) -> None:
        self.root = root
        self.specs = {spec.name: spec for spec in specs}
        # one cache for every database of the worker: RocksDB's default is 2 GiB *each*
        self._cache = rocksdict.Cache(block_cache_bytes)
        self._dbs: dict[tuple[str, int], rocksdict.Rdict] = {}

    def _options(self, spec: TableSpec) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(spec.max_open_files)
        options.set_write_buffer_size(spec.write_buffer_bytes)
        options.set_max_write_buffer_number(2)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, block_based=True)
        table.set_block_cache(self._cache)
        options.set_block_based_table_factory(table)
        return options

    def path(self, name: str, partition: int) -> Path:
        return self.root / f"{name}-{partition}.db"

    def open(self, name: str, partition: int, *, fresh: bool) -> None:
        path = self.path(name, partition)
        if fresh and path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._dbs[(name, partition)] = rocksdict.Rdict(
            str(path), options=self._options(self.specs[name])
        )

    def close(self, name: str, partition: int) -> None:
        db = self._dbs.pop((name, partition), None)
        if db is not None:
            db.close()

    def close_all(self) -> None:
        for name, partition in list(self._dbs):
            self.close(name, partition)

    def db(self, name: str, partition: int) -> rocksdict.Rdict:
        return self._dbs[(name, partition)]

    def dbs(self, name: str) -> list[rocksdict.Rdict]:
        return [db for (table, _), db in list(self._dbs.items()) if table == name]

    def is_open(self, name: str, partition: int) -> bool:
        return (name, partition) in self._dbs


class PartitionedState:
    """One table: bytes in, bytes out, written through the partition's transaction."""

    def __init__(self, tables: RocksTables, spec: TableSpec, send: Send) -> None:
        self._tables = tables
        self.spec = spec
        self._send = send
        self._overlay: dict[int, dict[bytes, Any]] = {}

    @property
    def changelog_topic(self) -> str:
        return self.spec.changelog_topic

    def get(self, partition: int, key: bytes) -> bytes | None:
        pending = self._overlay.get(partition)
        if pending is not None and key in pending:
            value = pending[key]
            return None if value is _DELETED else value  # type: ignore[no-any-return]
        value = self._tables.db(self.spec.name, partition).get(key)
        return None if value is None else bytes(value)

    def lookup(self, key: bytes) -> bytes | None:
        """Find ``key`` in whichever local partition holds it (committed state only)."""
        for db in self._tables.dbs(self.spec.name):
            value = db.get(key)
            if value is not None:
                return bytes(value)
        return None

    def lookup_prefix(self, prefix: bytes) -> list[bytes]:
        """The values of the keys that start with ``prefix``, in key order, from whichever
        local partition holds them (committed state only)."""
        for db in self._tables.dbs(self.spec.name):
            values = []
            it = db.iter()
            it.seek(prefix)
            while it.valid():
                if not bytes(it.key()).startswith(prefix):
                    break
                values.append(bytes(it.value()))
                it.next()
            if values:
                return values
        return []

    async def put(self, source: TP, key: bytes, value: bytes) -> None:
        """Write ``key`` in the partition of ``source``, in that partition's transaction."""
        self._overlay.setdefault(source.partition, {})[key] = value
        await self._send(source.partition, self.spec.changelog_topic, key, value)

    async def delete(self, source: TP, key: bytes) -> None:
        self._overlay.setdefault(source.partition, {})[key] = _DELETED
        await self._send(source.partition, self.spec.changelog_topic, key, None)

    def keys_from(self, partition: int, start: bytes | None, limit: int) -> Iterator[bytes]:
        """Up to ``limit`` committed keys of one partition in key order, after ``start``."""
        it = self._tables.db(self.spec.name, partition).iter()
        if start is None:
            it.seek_to_first()
        else:
            it.seek(start)
            if it.valid() and bytes(it.key()) == start:
                it.next()
        count = 0
        while it.valid() and count < limit:
            yield bytes(it.key())
            it.next()
            count += 1

    def items_with_prefix(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Committed ``(key, value)`` pairs of one partition whose key starts with ``prefix``."""
        it = self._tables.db(self.spec.name, partition).iter()
        it.seek(prefix)
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(prefix):
                break
            yield key, bytes(it.value())
            it.next()

    # ---- transaction outcome ------------------------------------------------------------

    def committed(self, partition: int) -> int:
        """The partition's transaction committed: make its writes durable locally."""
        pending = self._overlay.pop(partition, None)
        if not pending:
            return 0
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in pending.items():
            if value is _DELETED:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._tables.db(self.spec.name, partition).write(batch)
        return len(pending)

    def aborted(self, partition: int) -> None:
        """The partition's transaction aborted: forget its writes."""
        self._overlay.pop(partition, None)


async def restore(
    tables: RocksTables,
    bootstrap_servers: list[str],
    partitions: list[int],
    *,
    progress: Callable[[str], None] = log.info,
) -> int:
    """Fill the (empty) databases of ``partitions`` from every table's committed changelog.

    Reads each changelog partition with a ``read_committed`` consumer from the start to its
    last stable offset; returns the number of records applied.
    """
    if not partitions:
        return 0
    by_topic = {spec.changelog_topic: spec.name for spec in tables.specs.values()}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    applied = 0
    started = time.monotonic()
    try:
        wanted = [TopicPartition(topic, p) for topic in by_topic for p in partitions]
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        ends = await consumer.end_offsets(wanted)
        pending = [tp for tp in wanted if ends[tp] > 0]
        deadline = started + RESTORE_TIMEOUT_S
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"restoring {pending} took over {RESTORE_TIMEOUT_S} s")
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=10000)
            for tp, records in batch.items():
                write = rocksdict.WriteBatch(raw_mode=True)
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    if record.value is None:
                        write.delete(record.key)
                    else:
                        write.put(record.key, record.value)
                    applied += 1
                tables.db(by_topic[tp.topic], tp.partition).write(write)
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    finally:
        await consumer.stop()
    progress(
        f"restored {applied} changelog records for partitions {sorted(partitions)} "
        f"in {time.monotonic() - started:.2f} s"
    )
    return applied
