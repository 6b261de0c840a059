"""The positions agent: position changes, repartitioned by account, folded into a table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from execdist.domain.positions import PositionChange, apply_change
from execdist.runtime.records import InputRecord
from execdist.tables.store import PartitionedState

SetAside = Callable[[InputRecord, str], Awaitable[None]]


class PositionsProcessor:
    """Folds one :class:`PositionChange` into its account's positions."""

    def __init__(self, positions: PartitionedState, set_aside: SetAside) -> None:
        self._positions = positions
        self._set_aside = set_aside

    async def process(self, record: InputRecord) -> None:
        key, value = record.key, record.value
        if key is None or value is None:
            return  # internal topic: only the join writes it, always with key and value
        change = PositionChange.from_dict(orjson.loads(value))
        raw = self._positions.get(record.partition, key)
        current = {} if raw is None else orjson.loads(raw)
        self._positions.put(record.partition, key, orjson.dumps(apply_change(current, change)))

    async def set_aside(self, record: InputRecord, error: str) -> None:
        """A change that cannot be folded goes the join's dead-letter way, bytes and all."""
        await self._set_aside(record, error)

    def release(self, partition: int) -> None:
        """Nothing is cached: positions are read from the table each time."""
