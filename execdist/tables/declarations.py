"""The tables of execdist and what they hold.

All are RocksDB databases (rocksdict), one per table and partition, partitioned like the input
topics, with a compacted changelog topic each (``<app id>-<table>-changelog``); values are
bytes written by :class:`~execdist.tables.store.PartitionedState`:

* ``execdist-order-state``: per order_id, the join's :class:`~execdist.domain.OrderState` as
  JSON. An order is deleted ``EXECDIST_ORDER_RETENTION_S`` (default 7 days) after its last
  activity once nothing is held for it, so state stays bounded by the recent order flow.
* ``execdist-timers``: ``due:<order_id>`` for every order with a pending gap or orphan timeout,
  holding when it is due, so a tick touches only those; and ``offsets:<partition>``, the next
  input offset of each input topic, written in the same transaction as the effects it describes.
* ``execdist-positions``: per account, bought and sold quantity and notional per symbol.

RocksDB's block cache defaults to 2 GiB per database; the worker shares one cache of
``BLOCK_CACHE_BYTES`` between all of its databases, and write buffers are kept small.
"""

from __future__ import annotations

from dataclasses import dataclass

ORDER_STATE = "execdist-order-state"
TIMERS = "execdist-timers"
POSITIONS = "execdist-positions"

BLOCK_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TableSpec:
    name: str
    changelog_topic: str
    write_buffer_bytes: int = 8 * 1024 * 1024
    max_open_files: int = 256


def changelog_topic(app_id: str, table: str) -> str:
    return f"{app_id}-{table}-changelog"


def table_specs(app_id: str) -> list[TableSpec]:
    return [
        TableSpec(name, changelog_topic(app_id, name)) for name in (ORDER_STATE, TIMERS, POSITIONS)
    ]
