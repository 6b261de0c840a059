"""Every input record applied at most once, whatever the consumer re-delivers.

The state knows which input offsets it contains: with each transaction the next offset to
apply for every input topic of the partition is written to the state (``offsets:<partition>``
in the timers table), in the same transaction as the effects it describes. A record is then
admitted only if it is the next one:

* an offset below the next one was applied already (a re-delivery): it is skipped, which also
  keeps non-idempotent folds such as positions exact;
* an offset above the next one is a hole in the topic (transaction markers, aborted records)
  and is accepted.

The same record tells the pipeline where to resume a partition it has just restored.
"""

from __future__ import annotations

import orjson

from execdist.tables.store import PartitionedState

InputPartition = tuple[str, int]


def _key(partition: int) -> bytes:
    return f"offsets:{partition}".encode()


class InputContinuity:
    """Admits each input record at most once, in offset order, per partition."""

    def __init__(self, store: PartitionedState) -> None:
        self._store = store
        self._next: dict[InputPartition, int] = {}
        """The next offset to apply of each input partition processed since the last restore or
        rollback. Keyed by plain (topic, partition) tuples, as the engine has them at hand: a
        named ``TopicPartition`` built per record costs about half a microsecond."""
        self._dirty: set[int] = set()
        self.holes_seen = 0
        self.redeliveries_skipped = 0

    def stored(self, partition: int) -> dict[str, int]:
        """The next offset of each input topic of ``partition``, as its state records it."""
        raw = self._store.get(partition, _key(partition))
        return {} if raw is None else {k: int(v) for k, v in orjson.loads(raw).items()}

    def next_offset(self, tp: InputPartition) -> int | None:
        """The offset of ``tp`` to apply next: past what is processed, else as the state
        records it; ``None`` if the state has never seen the topic."""
        processed = self._next.get(tp)
        if processed is not None:
            return processed
        return self.stored(tp[1]).get(tp[0])

    def forget(self, partition: int) -> None:
        """Drop what is cached for ``partition``: its state was restored or rolled back."""
        for tp in [tp for tp in self._next if tp[1] == partition]:
            del self._next[tp]
        self._dirty.discard(partition)

    def admit(self, tp: InputPartition, offset: int) -> bool:
        """True when the record of ``tp`` (topic, partition) at ``offset`` has not been applied
        yet."""
        expected = self._next.get(tp)
        if expected is None:
            topic, partition = tp
            expected = self.stored(partition).get(topic, offset)
        if offset < expected:
            self._next[tp] = expected
            self.redeliveries_skipped += 1
            return False
        if offset > expected:
            # a hole: transaction markers or aborted records, which read_committed skips
            self.holes_seen += 1
        self._next[tp] = offset + 1
        self._dirty.add(tp[1])
        return True

    def flush(self, partition: int) -> None:
        """Write the next offsets of ``partition`` into the open transaction."""
        if partition not in self._dirty:
            return
        record = self.stored(partition)
        record.update({topic: nxt for (topic, p), nxt in self._next.items() if p == partition})
        self._store.put(partition, _key(partition), orjson.dumps(record))
        self._dirty.discard(partition)
