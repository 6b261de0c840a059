"""Every input record applied at most once, whatever the consumer re-delivers.

The state knows which input offsets it contains: at each transaction commit the next offset
to apply for every input partition is written to the state (``offsets:<partition>`` in the
timers table), in the same transaction as the effects it describes. An agent then admits a
record only if it is the next one:

* an offset below the next one was applied already (a re-delivery after a rebalance rewound
  the consumer to its committed offset while the transaction with the effects stayed open):
  it is skipped, which also keeps non-idempotent folds such as positions exact;
* an offset above the next one is a hole in the topic (transaction markers, aborted records)
  and is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from faust.types import TP

from execdist.tables.store import PartitionedState


def _key(partition: int) -> bytes:
    return f"offsets:{partition}".encode()


class InputContinuity:
    """Admits each input record at most once, in offset order, per partition."""

    def __init__(self, store: PartitionedState) -> None:
        self._store = store
        self._next: dict[TP, int] = {}
        self._dirty: set[int] = set()
        self._partitions: set[int] = set()
        self.holes_seen = 0
        self.redeliveries_skipped = 0

    def on_assigned(self, assigned: Iterable[TP]) -> None:
        """Forget partitions that are new to this worker: their state was restored afresh."""
        partitions = {tp.partition for tp in assigned}
        new = partitions - self._partitions
        for tp in [tp for tp in self._next if tp.partition in new]:
            del self._next[tp]
        self._dirty -= new
        self._partitions = partitions

    def _load(self, tp: TP) -> int | None:
        raw = self._store.get(tp.partition, _key(tp.partition))
        if raw is None:
            return None
        stored = orjson.loads(raw).get(tp.topic)
        return None if stored is None else int(stored)

    def admit(self, tp: TP, offset: int) -> bool:
        """True when the record at ``offset`` has not been applied yet."""
        expected = self._next.get(tp)
        if expected is None:
            expected = self._load(tp)
            if expected is None:
                expected = offset  # nothing of this partition applied yet
        if offset < expected:
            self._next[tp] = expected
            self.redeliveries_skipped += 1
            return False
        if offset > expected:
            # a hole: transaction markers or aborted records, which read_committed skips
            self.holes_seen += 1
        self._next[tp] = offset + 1
        self._dirty.add(tp.partition)
        return True

    async def flush(self) -> None:
        """Write the next offsets of every partition that moved, into its open transaction."""
        for partition in sorted(self._dirty & self._partitions):
            record = {tp.topic: nxt for tp, nxt in self._next.items() if tp.partition == partition}
            source = next(tp for tp in self._next if tp.partition == partition)
            await self._store.put(source, _key(partition), orjson.dumps(record))
        self._dirty.clear()
