"""The worker's RocksDB memtables share one budget, whatever the partitions it owns."""

from __future__ import annotations

import os
from pathlib import Path

from execdist.tables.declarations import HISTORY, ORDER_STATE, table_specs
from execdist.tables.store import RocksTables

NAMES = [ORDER_STATE, HISTORY]
PARTITIONS = range(4)
KEYS = 12_000
VALUE_BYTES = 200


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
    # RocksDB keeps about one arena block (1 MB here) per database even after a flush
    assert bounded <= written / 2, f"{bounded} bytes held of {written} written"
