"""The positions agent: folds each order's position changes into its account's positions.

Positions live in a table keyed by account, partitioned like the inputs by the account's
murmur2 partition; the join makes the changes, keyed by order. A change whose account
partition this worker holds is folded at once, in the transaction of the execution that made
it: with one worker, or whenever an order's partition and its account's meet, a position costs
no extra hop and no extra transaction. Any other change goes through
``execdist-internal.positions-by-account`` to the worker that holds its account (the way Kafka
Streams repartitions) and is folded when that worker reads it.

Folding adds quantities and notionals, so the order in which changes arrive does not matter:
a change folded at once may overtake one of the same account still on its way through the
topic, and the sums come out the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import orjson

from execdist.domain.positions import (
    NO_FIGURES,
    Figures,
    PositionChange,
    fold_change,
    positions_from_stored,
    positions_to_stored,
)
from execdist.runtime.records import InputRecord
from execdist.runtime.transaction import RecordSink
from execdist.tables.store import PartitionedState
from execdist.topics import POSITIONS_BY_ACCOUNT, KeyPartitions

SetAside = Callable[[InputRecord, str], Awaitable[None]]

_CACHED_ACCOUNTS = 10_000
"""Accounts whose positions are kept decoded, per partition (bounded likewise)."""


class PositionsProcessor:
    """Folds :class:`PositionChange` records into their account's positions."""

    def __init__(
        self,
        positions: PartitionedState,
        out: RecordSink,
        partitions: int,
        set_aside: SetAside,
    ) -> None:
        self._positions = positions
        self._out = out
        self._set_aside = set_aside
        self._account_partitions = KeyPartitions(partitions)
        self._cache: dict[int, dict[bytes, _Account]] = {}
        """Each partition's positions as of the open transaction, decoded (a cache of the
        table, so an account that trades all day is not decoded and encoded at every fill)."""

    def change(self, change: PositionChange) -> None:
        """Take one change from the join: folded now if this worker holds its account, else
        sent to the worker that does."""
        key = change.account.encode()
        partition = self._account_partitions.of(change.account)
        if self._positions.holds(partition):
            self._fold(partition, key, change)
        else:
            self._out.send(
                POSITIONS_BY_ACCOUNT, key, orjson.dumps(change.to_dict()), partition=partition
            )

    async def process(self, record: InputRecord) -> None:
        """Fold one change that came through the topic."""
        key, value = record.key, record.value
        if key is None or value is None:
            return  # internal topic: only the join writes it, always with key and value
        self._fold(record.partition, key, PositionChange.from_dict(orjson.loads(value)))

    async def set_aside(self, record: InputRecord, error: str) -> None:
        """A change that cannot be folded goes the join's dead-letter way, bytes and all."""
        await self._set_aside(record, error)

    def release(self, partition: int) -> None:
        """The partition's uncommitted work was dropped or it left: read it from the table
        again."""
        self._cache.pop(partition, None)

    def _fold(self, partition: int, key: bytes, change: PositionChange) -> None:
        cache = self._cache.get(partition)
        if cache is None or len(cache) >= _CACHED_ACCOUNTS:
            cache = self._cache[partition] = {}
        account = cache.get(key)
        if account is None:
            raw = self._positions.get(partition, key)
            account = cache[key] = _Account({} if raw is None else orjson.loads(raw))
        figures = account.figures
        figures[change.symbol] = fold_change(figures.get(change.symbol, NO_FIGURES), change)
        # encoded once per commit (when the commit seals the table's writes), however many
        # changes the account had in the transaction
        self._positions.put_encoded_later(partition, key, account.encode)


class _Account:
    """One account's positions as the open transaction has them, decoded."""

    __slots__ = ("encode", "figures")

    def __init__(self, stored: dict[str, dict[str, str]]) -> None:
        self.figures: dict[str, Figures] = positions_from_stored(stored)
        self.encode = partial(_encoded, self.figures)


def _encoded(figures: dict[str, Figures]) -> bytes:
    return orjson.dumps(positions_to_stored(figures))
