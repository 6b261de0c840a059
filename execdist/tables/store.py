"""Partition-local tables: RocksDB (rocksdict) per table and partition, and their changelog.

What each table holds is described in :mod:`execdist.tables.declarations`.

Writes made while an input batch is processed go to a per-partition *overlay* first, one entry
per key. When the batch commits, the overlay goes to the changelog inside the worker's
Kafka transaction (one record per key and commit), and only once that transaction has committed
is it written to RocksDB, in one atomic write batch; if the transaction aborts the overlay is
dropped. RocksDB therefore only ever holds committed state, and a record that is processed again
after an abort meets the state it met the first time.

A partition newly assigned to this worker starts from an empty database restored from the
committed changelog (:mod:`execdist.runtime.restore`), the way Kafka Streams recovers a task
after an unclean stop: local files may be older than the changelog, or left behind by another
incarnation.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rocksdict

from execdist.tables.declarations import ARENA_BLOCK_BYTES, WRITE_BUFFER_BYTES, TableSpec

_DELETED = object()
_NOT_PENDING = object()


class _Later:
    """An overlay value not encoded yet (see :meth:`PartitionedState.put_encoded_later`)."""

    __slots__ = ("encode",)

    def __init__(self, encode: Callable[[], bytes]) -> None:
        self.encode = encode


class RocksTables:
    """Opens, closes and wipes the RocksDB databases of every table, per partition."""

    def __init__(
        self,
        root: Path,
        specs: list[TableSpec],
        block_cache_bytes: int,
        write_buffer_bytes: int = WRITE_BUFFER_BYTES,
    ) -> None:
        self.root = root
        self.specs = {spec.name: spec for spec in specs}
        # one cache for every database of the worker: RocksDB's default is 2 GiB *each*
        self._cache = rocksdict.Cache(block_cache_bytes)
        # and one memtable budget (no stall: past it, RocksDB flushes sooner)
        self._write_buffers = rocksdict.WriteBufferManager(write_buffer_bytes, False)
        self._dbs: dict[tuple[str, int], rocksdict.Rdict] = {}
        # No write-ahead log, as Kafka Streams' RocksDB stores: a partition's databases are
        # always opened empty and filled from the changelog (see ``open``), never reopened
        # after a crash, so the log would only be written, never read.
        self._write_options = rocksdict.WriteOptions()
        # a property at run time; rocksdict's stub declares a method (the unit tests check it)
        self._write_options.disable_wal = True  # type: ignore[method-assign,assignment]

    def _options(self, spec: TableSpec) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(spec.max_open_files)
        options.set_write_buffer_size(spec.write_buffer_bytes)
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(self._write_buffers)
        options.set_arena_block_size(ARENA_BLOCK_BYTES)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, block_based=True)
        table.set_block_cache(self._cache)
        options.set_block_based_table_factory(table)
        return options

    def path(self, name: str, partition: int) -> Path:
        return self.root / f"{name}-{partition}.db"

    def open(self, name: str, partition: int, *, fresh: bool) -> None:
        """Open a partition's database; ``fresh`` empties it first, as the worker always does
        (its tables are filled from the changelog). Without a write-ahead log, a database
        reopened as it is holds only what RocksDB had flushed when it was last closed."""
        path = self.path(name, partition)
        if fresh and path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = rocksdict.Rdict(str(path), options=self._options(self.specs[name]))
        db.set_write_options(self._write_options)
        self._dbs[(name, partition)] = db

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
    """One table: bytes in, bytes out, partitioned like the inputs.

    Writes go to the partition's overlay, one entry per key: a key written many times between
    two commits yields one changelog record (the last value), as Kafka Streams' record cache
    coalesces them. :meth:`pending` hands the overlay to the commit, which sends it to the
    changelog in the worker's transaction; :meth:`committed` then writes it to RocksDB.
    """

    def __init__(self, tables: RocksTables, spec: TableSpec) -> None:
        self._tables = tables
        self.spec = spec
        self._overlay: dict[int, dict[bytes, Any]] = {}
        """The open transaction's writes, per partition."""
        self._sealed: dict[int, dict[bytes, Any]] | None = None
        """The writes of the transaction being committed, from :meth:`pending` until
        :meth:`committed` or :meth:`aborted`; the next batch writes to a new overlay meanwhile."""

    def get(self, partition: int, key: bytes) -> bytes | None:
        value = self._pending(partition, key)
        if value is _NOT_PENDING:
            value = self._tables.db(self.spec.name, partition).get(key)
            return None if value is None else bytes(value)
        return value  # type: ignore[no-any-return]

    def seen_as(self, partition: int, key: bytes, committed: bytes) -> bytes | None:
        """``key``'s value as the open transaction sees it, given ``committed``, the committed
        value a scan read with the key (:meth:`items_after`): that one, unless this
        transaction or the one being committed has written the key since."""
        value = self._pending(partition, key)
        return committed if value is _NOT_PENDING else value  # type: ignore[no-any-return]

    def _pending(self, partition: int, key: bytes) -> Any:
        """The uncommitted value of ``key`` (``None``: deleted), newest first;
        ``_NOT_PENDING`` if neither this transaction nor the one being committed wrote it."""
        for generation in (self._overlay, self._sealed):
            pending = None if generation is None else generation.get(partition)
            if pending is not None and key in pending:
                value = pending[key]
                if value is _DELETED:
                    return None
                if type(value) is _Later:
                    value = pending[key] = value.encode()
                return value
        return _NOT_PENDING

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

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        """Write ``key`` in ``partition``; it is sent and stored when the transaction commits."""
        self._overlay.setdefault(partition, {})[key] = value

    def put_encoded_later(self, partition: int, key: bytes, encode: Callable[[], bytes]) -> None:
        """Write ``key`` with the value ``encode()`` will give when it is first needed (at the
        commit, or by a read), so a key written many times in one transaction is encoded once,
        as Kafka Streams' record cache serialises on flush. ``encode`` must give the value as
        of its last write: the caller puts again after every change (with the same ``encode``
        again, or an equal one such as the same method of the same object, that costs a
        lookup)."""
        pending = self._overlay.setdefault(partition, {})
        current = pending.get(key)
        if type(current) is not _Later or current.encode != encode:
            pending[key] = _Later(encode)

    def delete(self, partition: int, key: bytes) -> None:
        self._overlay.setdefault(partition, {})[key] = _DELETED

    def has_writes(self) -> bool:
        """Whether the open transaction wrote anything to this table."""
        return any(self._overlay.values())

    def holds(self, partition: int) -> bool:
        """Whether this worker has the partition's database open."""
        return self._tables.is_open(self.spec.name, partition)

    def items_after(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` committed ``(key, value)`` pairs of one partition in key order,
        after the key ``after`` (from the first when ``None``). A list, not an iterator, so no
        RocksDB iterator outlives the call: a caller that yields between calls may see the
        partition closed in between, and must check :meth:`holds` again."""
        it = self._tables.db(self.spec.name, partition).iter()
        if after is None:
            it.seek_to_first()
        else:
            it.seek(after)
            if it.valid() and bytes(it.key()) == after:
                it.next()
        items: list[tuple[bytes, bytes]] = []
        while it.valid() and len(items) < limit:
            items.append((bytes(it.key()), bytes(it.value())))
            it.next()
        return items

    def current_items_after(
        self, partition: int, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """Like :meth:`items_after`, but as the open transaction sees the partition: its
        uncommitted writes (and those of the transaction being committed) included, its
        deletions applied. At most ``limit`` pairs, possibly fewer when some were deleted;
        an empty list only at the end."""
        committed = self.items_after(partition, after, limit)
        upper = committed[-1][0] if len(committed) == limit else None
        merged: dict[bytes, Any] = dict(committed)
        for generation in (self._sealed, self._overlay):
            writes = None if generation is None else generation.get(partition)
            for key, value in (writes or {}).items():
                if (after is None or key > after) and (upper is None or key <= upper):
                    merged[key] = value
        items = []
        for key in sorted(merged):
            value = merged[key]
            if value is _DELETED:
                continue
            if type(value) is _Later:
                value = value.encode()
            items.append((key, value))
        if not items and upper is not None:
            return self.current_items_after(partition, upper, limit)
        return items

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

    def pending(self) -> list[tuple[int, bytes, bytes | None]]:
        """Seal the open transaction's writes for its commit and give them, one per key:
        (partition, key, value or ``None``). Writes made from now on belong to the next
        transaction, which may be processed while this one commits."""
        if self._sealed is not None:
            raise RuntimeError("the previous commit of this table has not finished")
        sealed, self._overlay = self._overlay, {}
        self._sealed = sealed
        records: list[tuple[int, bytes, bytes | None]] = []
        for partition, writes in sealed.items():
            for key, value in writes.items():
                if value is _DELETED:
                    records.append((partition, key, None))
                    continue
                if type(value) is _Later:
                    # from here on the value is what was sent, whatever the object does next
                    value = writes[key] = value.encode()
                records.append((partition, key, value))
        return records

    def committed(self) -> int:
        """The transaction committed: make its writes durable locally; returns how many.
        Those are the writes :meth:`pending` sealed (or, if it was not asked, all so far)."""
        sealed, self._sealed = self._sealed, None
        if sealed is None:
            sealed, self._overlay = self._overlay, {}
        written = 0
        for partition, pending in sealed.items():
            if not pending or not self._tables.is_open(self.spec.name, partition):
                continue
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in pending.items():
                if value is _DELETED:
                    batch.delete(key)
                else:
                    batch.put(key, value.encode() if type(value) is _Later else value)
            self._tables.db(self.spec.name, partition).write(batch)
            written += len(pending)
        return written

    def aborted(self, partition: int | None = None) -> None:
        """The transaction aborted (or ``partition`` left): forget the uncommitted writes, of
        the transaction being committed as well as of the open one."""
        if partition is None:
            self._overlay.clear()
            self._sealed = None
        else:
            self._overlay.pop(partition, None)
            if self._sealed is not None:
                self._sealed.pop(partition, None)
