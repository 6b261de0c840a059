"""The positions agent: position changes, repartitioned by account, folded into a table."""

from __future__ import annotations

import orjson

from execdist.domain.positions import PositionChange, apply_change
from execdist.tables.store import PartitionedState
from execdist.topics import TP


class PositionsProcessor:
    """Folds one :class:`PositionChange` into its account's positions."""

    def __init__(self, positions: PartitionedState) -> None:
        self._positions = positions

    async def handle(self, tp: TP, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return  # internal topic: only the join writes it, always with key and value
        change = PositionChange.from_dict(orjson.loads(value))
        raw = self._positions.get(tp.partition, key)
        current = {} if raw is None else orjson.loads(raw)
        await self._positions.put(tp, key, orjson.dumps(apply_change(current, change)))
