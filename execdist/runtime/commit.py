"""Committing a batch: changelogs, then offsets and outputs in one transaction, then RocksDB.

The order is quix-streams' checkpoint and Kafka Streams' task commit:

1. each table's uncommitted writes go to the changelog, one record per key (the overlay has
   coalesced repeated writes of a key since the last commit), under the table's tag;
2. the next input offsets are sent with the consumer's group metadata, and the transaction is
   committed; the commit waits for every record of it to be acknowledged;
3. only then are the writes applied to RocksDB, so the local tables only ever hold what Kafka
   holds as committed.

If the transaction does not commit, the writes are dropped instead (:meth:`Committer.abandon`).
What else counts only once committed (the subscriptions' delivery figures) follows the same
three steps as a :class:`CommitFollower`.
"""

from __future__ import annotations

from typing import Protocol

from confluent_kafka import TopicPartition

from execdist.runtime.transaction import Committed, WorkerTransaction
from execdist.tables.store import PartitionedState


class CommitFollower(Protocol):
    """Something kept per transaction outside the tables: sealed when its transaction starts
    to commit, applied when it committed, dropped when it did not."""

    def seal(self) -> None: ...

    def committed(self) -> None: ...

    def aborted(self) -> None: ...


class Committer:
    """Turns the tables' pending writes and the batch's offsets into one committed transaction."""

    def __init__(
        self,
        transaction: WorkerTransaction,
        tables: list[PartitionedState],
        followers: list[CommitFollower] | None = None,
    ) -> None:
        self._transaction = transaction
        self._tables = tables
        self._followers = list(followers or [])

    def has_changes(self) -> bool:
        """Whether the open transaction holds anything to commit: a table write or a record."""
        return self._transaction.sending or any(table.has_writes() for table in self._tables)

    def send_changelogs(self) -> int:
        """Step 1, on the event loop: queue the changelog records; returns how many."""
        sent = 0
        for table in self._tables:
            topic, tag = table.spec.changelog_topic, table.spec.changelog_tag
            for partition, key, value in table.pending():
                self._transaction.send(topic, tag + key, value, partition=partition)
                sent += 1
        for follower in self._followers:
            follower.seal()
        return sent

    def commit(self, offsets: dict[tuple[str, int], int], group_metadata: object) -> Committed:
        """Step 2, blocking (on the Kafka thread): commit; returns what it held and took."""
        positions = [TopicPartition(topic, p, offset) for (topic, p), offset in offsets.items()]
        return self._transaction.commit(positions, group_metadata)

    def apply(self) -> int:
        """Step 3: the transaction committed; write its table changes to RocksDB."""
        for follower in self._followers:
            follower.committed()
        return sum(table.committed() for table in self._tables)

    def abandon(self, partition: int | None = None) -> None:
        """The transaction did not commit (or ``partition`` left): forget the writes."""
        for table in self._tables:
            table.aborted(partition)
        if partition is None:
            for follower in self._followers:
                follower.aborted()
