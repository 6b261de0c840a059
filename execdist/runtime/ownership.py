"""Partitions coming and going: what a worker does when it is given or loses a partition.

Taking a partition: its tables are opened empty and restored from their committed changelogs,
then its inputs are read from the offsets the restored state records (or, for a partition no
transaction has touched yet, from the group's committed offsets). Releasing one: its
uncommitted writes and every cache of it are dropped and its tables closed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_STORED, TopicPartition

from execdist.runtime.commit import Committer
from execdist.runtime.restore import restore
from execdist.runtime.topology import Topology
from execdist.settings import Settings
from execdist.tables.store import RocksTables

log = logging.getLogger(__name__)


class Ownership:
    """The partitions this worker owns, their tables, and where their inputs resume."""

    def __init__(
        self, settings: Settings, topology: Topology, rocks: RocksTables, committer: Committer
    ) -> None:
        self._settings = settings
        self._topology = topology
        self._rocks = rocks
        self._committer = committer
        self.owned: set[int] = set()
        self.positions: dict[tuple[str, int], int] = {}
        """Next input offset of each owned input partition as of the last commit (or where it
        started: a logical offset such as ``OFFSET_BEGINNING`` until its first commit)."""

    async def take(self, assigned: list[TopicPartition]) -> list[TopicPartition]:
        """Own the partitions of ``assigned`` (input partitions, with the group's committed
        offsets); returns them positioned where their processing resumes."""
        started = time.monotonic()
        new = sorted({tp.partition for tp in assigned} - self.owned)
        for partition in new:
            for table in self._topology.tables:
                self._rocks.open(table.spec.name, partition, fresh=True)
        specs = [table.spec for table in self._topology.tables]
        await asyncio.to_thread(restore, self._settings, self._rocks, specs, new)
        self.owned.update(new)
        positioned = []
        for tp in assigned:
            stored = self._topology.continuity.stored(tp.partition)
            if tp.topic in stored:
                offset = stored[tp.topic]
            elif tp.offset >= 0:
                offset = tp.offset
            elif tp.offset == OFFSET_STORED:
                offset = OFFSET_BEGINNING
            else:
                offset = tp.offset
            self.positions[(tp.topic, tp.partition)] = offset
            positioned.append(TopicPartition(tp.topic, tp.partition, offset))
        log.info(
            "pipeline owns partitions %s (%s new, ready in %.2f s)",
            sorted(self.owned),
            new,
            time.monotonic() - started,
        )
        return positioned

    def release(self, partitions: list[int] | None = None) -> None:
        """Stop owning ``partitions`` (all when ``None``)."""
        for partition in sorted(self.owned if partitions is None else partitions):
            self.forget_uncommitted(partition)
            for table in self._topology.tables:
                self._rocks.close(table.spec.name, partition)
            self.owned.discard(partition)
            self.positions = {tp: o for tp, o in self.positions.items() if tp[1] != partition}

    def forget_uncommitted(self, partition: int | None = None) -> None:
        """Drop the uncommitted writes and caches of ``partition`` (all when ``None``)."""
        self._committer.abandon(partition)
        for each in sorted(self.owned) if partition is None else [partition]:
            self._topology.continuity.forget(each)
            for processor in self._topology.processors:
                processor.release(each)

    def resume_positions(self) -> list[TopicPartition]:
        """Where every owned input partition resumes after uncommitted work was dropped."""
        return [TopicPartition(topic, p, offset) for (topic, p), offset in self.positions.items()]

    def committed(self, offsets: dict[tuple[str, int], int]) -> None:
        self.positions.update(offsets)

    async def rebuild(self) -> list[TopicPartition]:
        """Restore every owned partition from its changelogs again (after a transaction whose
        outcome is unknown); returns the positions to resume from."""
        owned = sorted(self.owned)
        assigned = [TopicPartition(t, p, o) for (t, p), o in self.positions.items()]
        # every uncommitted write goes, the failed commit's included: released one partition
        # at a time, its writes would stay sealed and the next commit could not begin
        self.forget_uncommitted()
        self.release()
        return await self.take(assigned) if owned else []
