"""RocksDB store that never trusts local state it may have written in an aborted transaction.

A worker writes RocksDB at once, while the matching changelog records only count when the
partition's transaction commits. After a crash, or when a partition comes back after living on
another worker, the local files can hold writes whose transaction was aborted: trusting them
would make a re-delivered execution look like a duplicate and lose its confirmation. So, as
Kafka Streams does under exactly-once after an unclean stop, a partition newly assigned to this
worker starts from an empty database and is restored from the committed changelog.

The restore is done here, in full, before the rebalance completes, with a ``read_committed``
consumer of our own that reads up to the last stable offset. Faust's own recovery then starts
after what was restored and finds (nearly) nothing left to do: its end-of-recovery detection
under transactions can stop early and drop records still in flight, which is how a restarted
worker used to lose state. Partitions that stay assigned across a rebalance keep their database.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import faust.stores
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store
from faust.types import TP

SCHEME = "execdist-rocksdb"
RESTORE_TIMEOUT_S = 300.0


class FreshOnAssignStore(Store):  # type: ignore[misc]
    """Faust's RocksDB store, emptied and restored for every partition newly assigned."""

    async def assign_partitions(
        self, table: Any, tps: set[TP], generation_id: int = 0
    ) -> None:
        standbys = self.app.assignor.assigned_standbys()
        fresh: list[TP] = []
        for tp in tps:
            if (
                tp.topic in table.changelog_topic.topics
                and tp not in standbys
                and tp.partition not in self._dbs
            ):
                path = self.partition_path(tp.partition)
                if path.exists():
                    self.logger.info("discarding local state of %s; restoring from changelog", tp)
                    shutil.rmtree(path)
                fresh.append(tp)
        await super().assign_partitions(table, tps, generation_id)
        if fresh:
            await self._restore(fresh)

    async def _restore(self, tps: list[TP]) -> None:
        """Read each changelog partition from the start to its last stable offset."""
        servers = [f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(tp.topic, tp.partition) for tp in tps]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            last: dict[TopicPartition, int] = {}
            applied = 0
            deadline = time.monotonic() + RESTORE_TIMEOUT_S
            pending = [p for p in partitions if ends[p] > 0]
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"restoring {pending} took over {RESTORE_TIMEOUT_S} s")
                batch = await consumer.getmany(*pending, timeout_ms=500, max_records=5000)
                for partition, records in batch.items():
                    db = self._db_for_partition(partition.partition)
                    for record in records:
                        if record.value is None:
                            db.delete(record.key)
                        else:
                            db.put(record.key, record.value)
                        last[partition] = record.offset
                        applied += 1
                pending = [p for p in pending if await consumer.position(p) < ends[p]]
            for partition, offset in last.items():
                self.set_persisted_offset(TP(partition.topic, partition.partition), offset)
            self.logger.info(
                "restored %d changelog records for %s",
                applied,
                ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
            )
        finally:
            await consumer.stop()


def register() -> str:
    """Make ``execdist-rocksdb://`` resolvable by Faust; returns the store URL."""
    faust.stores.STORES.aliases[SCHEME] = f"{__name__}:FreshOnAssignStore"
    return f"{SCHEME}://"
