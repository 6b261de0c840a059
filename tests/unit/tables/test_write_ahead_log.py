"""The tables write no RocksDB write-ahead log: a partition's databases are always opened empty
and filled from the changelog, so the log would only cost a write per commit.

Real RocksDB databases in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import rocksdict

from execdist.tables.declarations import ORDER_STATE, table_specs
from execdist.tables.store import PartitionedState, RocksTables


def _log_bytes(folder: Path) -> int:
    """Bytes in a database folder's write-ahead log files."""
    return sum(path.stat().st_size for path in folder.glob("*.log"))


def test_committed_writes_are_readable_and_leave_no_write_ahead_log(tmp_path: Path) -> None:
    tables = RocksTables(tmp_path, table_specs("wal-test"), 8 * 1024 * 1024)
    tables.open(ORDER_STATE, 0, fresh=True)
    state = PartitionedState(tables, tables.specs[ORDER_STATE])
    try:
        for commit in range(20):
            for n in range(100):
                state.put(0, b"order-%02d-%03d" % (commit, n), b"x" * 200)
            state.pending()
            assert state.committed() == 100
        assert state.get(0, b"order-19-099") == b"x" * 200
        assert state.get(0, b"order-00-000") == b"x" * 200
        deleted = b"order-05-005"
        state.delete(0, deleted)
        state.pending()
        state.committed()
        assert state.get(0, deleted) is None
        # 2,000 values of 200 bytes went in; with a log they would all be in it, too
        assert _log_bytes(tables.path(ORDER_STATE, 0)) == 0
    finally:
        tables.close_all()


def test_the_log_check_sees_a_log_when_one_is_written(tmp_path: Path) -> None:
    """The measure above is a real one: RocksDB's default writes the log it checks for."""
    folder = tmp_path / "with-log.db"
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(str(folder), options=options)
    try:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for n in range(100):
            batch.put(b"order-%03d" % n, b"x" * 200)
        db.write(batch)
        assert _log_bytes(folder) >= 100 * 200
    finally:
        db.close()
