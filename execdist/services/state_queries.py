"""The use cases behind ``GET /api/v1/orders/{id}``, ``/orders/{id}/confirmations`` and
``/positions/{account}``: read from this worker's tables (the view routes a request to the
worker that owns the key's partition first)."""

from __future__ import annotations

import orjson

from execdist.domain import OrderState, order_view
from execdist.domain.errors import ExecDistError
from execdist.domain.positions import position_view
from execdist.tables.declarations import history_prefix
from execdist.tables.store import PartitionedState


class NotKnown(ExecDistError):
    """No such order or account here (or it expired)."""


class StateQueries:
    def __init__(
        self, states: PartitionedState, history: PartitionedState, positions: PartitionedState
    ) -> None:
        self._states = states
        self._history = history
        self._positions = positions

    def order(self, order_id: str) -> dict[str, object]:
        state = OrderState.from_dict(orjson.loads(self._stored_state(order_id)))
        return order_view(state)

    def confirmations(self, order_id: str) -> dict[str, object]:
        self._stored_state(order_id)  # not known: NotKnown
        # stored as published, under keys in seq order
        items = [
            orjson.loads(value) for value in self._history.lookup_prefix(history_prefix(order_id))
        ]
        return {"order_id": order_id, "items": items}

    def position(self, account: str) -> dict[str, object]:
        raw = self._positions.lookup(account.encode())
        if raw is None:
            raise NotKnown(f"no executions are known for account {account!r}")
        return position_view(account, orjson.loads(raw))

    def _stored_state(self, order_id: str) -> bytes:
        raw = self._states.lookup(order_id.encode())
        if raw is None:
            raise NotKnown(f"no order {order_id!r} is known (or it expired)")
        return raw
