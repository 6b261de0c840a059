"""The topology's punctuators on a wall-clock schedule, as Kafka Streams runs a ``WALL_CLOCK_TIME``
punctuator: once per tick interval, every owned partition, in the topology's order.

The engine's loop asks :meth:`Punctuation.until_due` how long it may wait for input, and runs
:meth:`Punctuation.run` inside its open transaction when it is due; what a punctuator writes or
sends is committed with that transaction, or rolled back with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from execdist.runtime.topology import PunctuationContext, Punctuator


class PunctuationFailed(Exception):
    """A punctuator raised for ``partition``; the cause is chained."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"punctuating partition {partition} failed")
        self.partition = partition


class Punctuation:
    """When the punctuators are due, and running them."""

    def __init__(
        self,
        punctuators: Sequence[Punctuator],
        interval_s: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._punctuators = list(punctuators)
        self._interval = interval_s
        self._clock = clock
        self._next = clock() + interval_s

    def until_due(self) -> float:
        """Seconds until the next run is due (0 when it is)."""
        return max(self._next - self._clock(), 0.0)

    def due(self) -> bool:
        return self._clock() >= self._next

    async def run(self, partitions: Iterable[PunctuationContext]) -> None:
        """Call every punctuator for each of ``partitions``; the next run is due one interval
        from now, also when no partition is given (none are while they change hands)."""
        self._next = self._clock() + self._interval
        for context in partitions:
            try:
                for punctuate in self._punctuators:
                    await punctuate(context)
            except Exception as exc:
                raise PunctuationFailed(context.partition) from exc
