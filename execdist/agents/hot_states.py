"""Recently used order states, kept decoded, per partition.

An order's executions usually come close together, and decoding an order's stored JSON is the
dearest part of looking it up. The join keeps what it last stored here, bounded by count and by
the size of the stored form (a state holding large waiting executions can be megabytes), and
drops a partition's entries with any uncommitted work.
"""

from __future__ import annotations

from collections import OrderedDict

from execdist.domain import OrderState, RecordOrigin

MAX_STATES = 2048
MAX_BYTES = 16 * 1024 * 1024
"""Of stored JSON (as :func:`approximate_size` reckons it); the decoded objects take a few
times that."""


def approximate_size(state: OrderState) -> int:
    """About how many bytes ``state`` takes stored, without encoding it (the join encodes a
    state once per commit, not at every change): a few hundred per fill and per execution
    seen, plus the original bytes each waiting execution carries, which is what can make a
    state large."""
    size = 512 + 160 * len(state.seen) + 96 * (len(state.live_fills) + len(state.trade_of))
    for held in state.held.values():
        size += 384
        origin = held.origin
        if isinstance(origin, RecordOrigin):
            size += 4 * (len(origin.key or b"") + len(origin.value or b"")) // 3
        elif isinstance(origin, dict):
            size += sum(len(value) for value in origin.values() if isinstance(value, str))
    return size


class HotStates:
    """One partition's cache: the least recently used state goes first."""

    def __init__(self, max_states: int = MAX_STATES, max_bytes: int = MAX_BYTES) -> None:
        self._max_states = max_states
        self._max_bytes = max_bytes
        self._states: OrderedDict[str, tuple[OrderState, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, order_id: str) -> OrderState | None:
        entry = self._states.get(order_id)
        if entry is None:
            return None
        self._states.move_to_end(order_id)
        return entry[0]

    def keep(self, state: OrderState, stored_bytes: int) -> None:
        """Remember ``state`` as just stored (``stored_bytes`` long); a state larger than the
        whole budget is not kept."""
        self.drop(state.order_id)
        if stored_bytes > self._max_bytes:
            return
        self._states[state.order_id] = (state, stored_bytes)
        self.bytes += stored_bytes
        while len(self._states) > self._max_states or self.bytes > self._max_bytes:
            _, (_, size) = self._states.popitem(last=False)
            self.bytes -= size

    def drop(self, order_id: str) -> None:
        entry = self._states.pop(order_id, None)
        if entry is not None:
            self.bytes -= entry[1]
