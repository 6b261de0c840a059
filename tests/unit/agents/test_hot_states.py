"""The join's cache of decoded order states: bounded by count and by stored size."""

from __future__ import annotations

import base64

import orjson

from execdist.agents.hot_states import HotStates, approximate_size
from execdist.domain import OrderState, parse_execution
from execdist.domain.order_state import HeldExecution, SeenExecution
from tests.unit.domain.fixtures import T0, execution_record


def state(order_id: str) -> OrderState:
    return OrderState.new(order_id, T0)


def test_the_least_recently_used_state_goes_first() -> None:
    hot = HotStates(max_states=2, max_bytes=1000)
    a, b, c = state("A"), state("B"), state("C")
    hot.keep(a, 10)
    hot.keep(b, 10)
    assert hot.get("A") is a  # A is now the most recently used
    hot.keep(c, 10)
    assert hot.get("B") is None
    assert hot.get("A") is a and hot.get("C") is c
    assert (len(hot), hot.bytes) == (2, 20)


def test_stored_size_bounds_the_cache() -> None:
    hot = HotStates(max_states=100, max_bytes=100)
    for order_id in "ABCD":
        hot.keep(state(order_id), 30)
    assert [o for o in "ABCD" if hot.get(o) is not None] == ["B", "C", "D"]
    assert hot.bytes == 90
    hot.keep(state("BIG"), 101)  # larger than the whole budget: not kept, nothing evicted
    assert hot.get("BIG") is None and len(hot) == 3


def test_keeping_again_replaces_and_drop_forgets() -> None:
    hot = HotStates(max_states=10, max_bytes=100)
    first, second = state("A"), state("A")
    hot.keep(first, 40)
    hot.keep(second, 50)
    assert hot.get("A") is second and hot.bytes == 50
    hot.keep(second, 200)  # grew past the budget: the stale entry must not stay
    assert hot.get("A") is None and hot.bytes == 0
    hot.keep(first, 40)
    hot.drop("A")
    hot.drop("A")
    assert hot.get("A") is None and hot.bytes == 0


def test_the_size_estimate_follows_the_stored_size() -> None:
    """The cache is bounded by an estimate (states are encoded once per commit, not at every
    change): within a factor of two of the stored JSON, waiting executions' bytes included."""
    small = OrderState.new("ORD-1", T0)
    big = OrderState.new("ORD-2", T0)
    for seq in range(2, 40):
        execution = parse_execution(execution_record(seq=seq, exec_id=f"E-{seq}"))
        origin = {
            "topic": "executions",
            "partition": 0,
            "offset": seq,
            "key": "T1JELTI=",
            "value": base64.b64encode(b"x" * 5000).decode(),
        }
        big.held[seq] = HeldExecution(execution, origin, T0)
        big.seen[execution.exec_id] = SeenExecution("f" * 64, seq)
    for each in (small, big):
        stored = len(orjson.dumps(each.to_dict()))
        assert stored / 2 <= approximate_size(each) <= stored * 2, (stored, approximate_size(each))
