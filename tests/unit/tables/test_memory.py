"""The worker's RocksDB memtables share one budget, whatever the partitions it owns."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rocksdict import Rdict

from execdist.tables.declarations import (
    HISTORY,
    ORDER_STATE,
    WRITE_BUFFER_BYTES,
    table_specs,
)
from execdist.tables.store import RocksTables

NAMES = [ORDER_STATE, HISTORY]
PARTITIONS = range(4)
KEYS = 12_000
VALUE_BYTES = 200


def settle(databases: list[Rdict], budget: int, timeout_s: float = 30.0) -> None:
    """Let the flushes the writing asked for run. RocksDB flushes on background threads, and
    its write buffer manager decides on a write: on a slow disk the flushes it asked for
    during the writing may still run when it ends, and the ones it would ask for next wait
    for a write. A worker writes at every commit; here one more small write to each database
    stands for that, until the memtables are within the budget or nothing more can flush."""
    deadline = time.monotonic() + timeout_s
    while True:
        flushing = sum(
            (db.property_int_value("rocksdb.mem-table-flush-pending") or 0)
            + (db.property_int_value("rocksdb.num-running-flushes") or 0)
            for db in databases
        )
        if not flushing:
            held = sum(
                db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0 for db in databases
            )
            if held <= budget:
                return
            for db in databases:
                db[b"settle"] = b""
        if time.monotonic() > deadline:
            return  # the assertion says what is held
        time.sleep(0.01)


def memtables_after_writing(tmp_path: Path, budget: int) -> int:
    """Bytes held in memtables after writing ~2.4 MB to each of 8 databases: each is under
    its own 8 MB write buffer, so only a shared budget makes RocksDB flush."""
    tables = RocksTables(tmp_path, table_specs("memory-test"), 8 * 1024 * 1024, budget)
    for name in NAMES:
        for p in PARTITIONS:
            tables.open(name, p, fresh=True)
    try:
        for n in range(KEYS):
            value = os.urandom(VALUE_BYTES)
            for name in NAMES:
                for p in PARTITIONS:
                    tables.db(name, p)[b"key-%06d" % n] = value
        assert all(tables.db(n, p).get(b"key-%06d" % (KEYS - 1)) for n in NAMES for p in PARTITIONS)
        settle([tables.db(name, p) for name in NAMES for p in PARTITIONS], budget)
        return sum(
            tables.db(name, p).property_int_value("rocksdb.cur-size-all-mem-tables") or 0
            for name in NAMES
            for p in PARTITIONS
        )
    finally:
        tables.close_all()


def test_a_shared_budget_flushes_memtables_that_would_each_stay_under_their_own(
    tmp_path: Path,
) -> None:
    written = KEYS * VALUE_BYTES * len(NAMES) * len(PARTITIONS)
    unbounded = memtables_after_writing(tmp_path / "unbounded", 1024 * 1024 * 1024)
    bounded = memtables_after_writing(tmp_path / "bounded", 4 * 1024 * 1024)
    assert unbounded >= written * 0.9, "without a budget every database keeps its writes"
    # RocksDB keeps about one arena block (64 KB here) per database even after a flush
    assert bounded <= written / 2, f"{bounded} bytes held of {written} written"


def test_a_worker_far_under_its_budget_flushes_nothing(tmp_path: Path) -> None:
    """Every table over four partitions, a few hundred small commits (about 1 MB in all, a
    sixteenth of the budget): nothing is flushed to a file. Each memtable takes the budget a
    block at a time; blocks of 1 MB (RocksDB's default here) put two dozen nearly empty
    memtables past it, and RocksDB then flushed at nearly every commit."""
    specs = table_specs("flush-test")
    tables = RocksTables(tmp_path, specs, 8 * 1024 * 1024, WRITE_BUFFER_BYTES)
    for spec in specs:
        for p in PARTITIONS:
            tables.open(spec.name, p, fresh=True)
    try:
        for n in range(600):
            for spec in specs:
                tables.db(spec.name, n % len(PARTITIONS))[b"key-%03d" % (n % 100)] = b"v" * 300
        flushed = sorted(path.name for path in tmp_path.rglob("*.sst"))
        assert flushed == [], f"{len(flushed)} files flushed"
    finally:
        tables.close_all()
