"""Every input record applied exactly once, whatever the consumer's offset bookkeeping does.

The state knows which input offsets it contains: at each transaction commit the next offset
to apply for every input partition is written to the state (``offsets:<partition>`` in the
timers table), in the same transaction as the effects it describes. An agent then admits a
record only if it is the next one:

* an offset below the next one was applied already (a re-delivery after a rebalance rewound
  the consumer to its committed offset while the transaction with the effects stayed open):
  it is skipped, which also keeps non-idempotent folds such as positions exact;
* an offset above the next one means records were skipped. Faust's consumer can do that when
  a fetch from before a rebalance's seek is delivered after it (its read-offset and "gap"
  bookkeeping then drop the records in between and count them as acked). The consumer is
  sought back to the next offset and the gap forgotten, so the records come again. If the
  same jump is seen again right after, it is a real hole in the topic (transaction markers
  or aborted records of a transactional producer) and is accepted. Only topics written without
  transactions are checked this way (``contiguous``): in a topic written in transactions every
  commit leaves such a hole, so there a jump is always accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import faust
import orjson
from faust.types import TP

from execdist.tables.store import PartitionedState

log = logging.getLogger(__name__)


def _key(partition: int) -> bytes:
    return f"offsets:{partition}".encode()


class InputContinuity:
    """Admits each input record once, in offset order, per partition."""

    def __init__(self, app: faust.App, store: PartitionedState, contiguous: Iterable[str]) -> None:
        self._app = app
        self._store = store
        self._contiguous = frozenset(contiguous)
        self._next: dict[TP, int] = {}
        self._probed: dict[TP, tuple[int, int]] = {}
        self._dirty: set[int] = set()
        self._partitions: set[int] = set()
        self.skips_repaired = 0
        self.redeliveries_skipped = 0

    def on_assigned(self, assigned: Iterable[TP]) -> None:
        """Forget partitions that are new to this worker: their state was restored afresh."""
        partitions = {tp.partition for tp in assigned}
        new = partitions - self._partitions
        for tp in [tp for tp in self._next if tp.partition in new]:
            del self._next[tp]
            self._probed.pop(tp, None)
        self._dirty -= new
        self._partitions = partitions

    def _load(self, tp: TP) -> int | None:
        raw = self._store.get(tp.partition, _key(tp.partition))
        if raw is None:
            return None
        stored = orjson.loads(raw).get(tp.topic)
        return None if stored is None else int(stored)

    async def admit(self, tp: TP, offset: int) -> bool:
        """True when the record at ``offset`` is the next to apply; see the module docstring."""
        expected = self._next.get(tp)
        if expected is None:
            expected = self._load(tp)
            if expected is None:
                expected = offset  # nothing of this partition applied yet
        if offset < expected:
            self._next[tp] = expected
            self.redeliveries_skipped += 1
            return False
        if (
            offset > expected
            and tp.topic in self._contiguous
            and self._probed.get(tp) != (expected, offset)
        ):
            self._probed[tp] = (expected, offset)
            self._next[tp] = expected
            self.skips_repaired += 1
            log.warning(
                "input %s jumped from offset %d to %d; re-reading from %d",
                tp,
                expected,
                offset,
                expected,
            )
            consumer = self._app.consumer
            consumer._gap.pop(tp, None)  # the skipped records must not count as acked
            await consumer.seek(tp, expected)
            return False
        self._probed.pop(tp, None)
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
