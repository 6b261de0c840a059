"""The tables of execdist and what they hold.

All are RocksDB tables (rocksdict) partitioned like the input topics, values are bytes written
by :class:`~execdist.tables.store.PartitionedState`:

* ``execdist-order-state``: per order_id, the join's :class:`~execdist.domain.OrderState` as
  JSON. An order is deleted ``EXECDIST_ORDER_RETENTION_S`` (default 7 days) after its last
  activity once nothing is held for it, so state stays bounded by the recent order flow.
* ``execdist-timers``: per partition, the order_ids with a pending gap or orphan timeout and
  when it is due, so a tick touches only those.
* ``execdist-positions``: per account, bought and sold quantity and notional per symbol.

RocksDB's block cache defaults to 2 GiB per partition database; we size it on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.tables.table import Table

from execdist.settings import Settings

ROCKSDB_OPTIONS = {
    "driver": "rocksdict",
    "block_cache_size": 16 * 1024 * 1024,
    "block_cache_compressed_size": 0,
    "write_buffer_size": 8 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "max_open_files": 256,
}


@dataclass(frozen=True)
class Tables:
    order_states: Table
    timers: Table
    positions: Table


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    def table(name: str, help_: str) -> Table:
        return app.Table(
            name,
            partitions=settings.topic_partitions,
            key_type=bytes,
            value_type=bytes,
            options=ROCKSDB_OPTIONS,
            help=help_,
        )

    return Tables(
        order_states=table("execdist-order-state", "Join state per order_id."),
        timers=table("execdist-timers", "Pending timeouts per partition."),
        positions=table("execdist-positions", "Positions per account."),
    )
