"""Properties of the join: arrival order, repeats and restarts never change the confirmations."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from fractions import Fraction

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from execdist.domain import (
    Confirmation,
    Confirmed,
    DropKind,
    Dropped,
    ExecType,
    Execution,
    Order,
    OrderState,
    Output,
    Rejected,
    RejectReason,
    apply_execution,
    apply_order,
)
from tests.unit.domain.fixtures import ORDER_ID, T0, at, bust, correct, make_order, trade

_quantities = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(60), places=8)
_prices = st.decimals(min_value=Decimal(0), max_value=Decimal(500), places=8)


@st.composite
def _orders_with_executions(draw: st.DrawFn) -> tuple[Order, list[Execution]]:
    """A valid order and a valid seq-ordered history of trades, corrections and busts."""
    order = make_order(str(draw(st.integers(min_value=1, max_value=150))))
    trade_of: dict[str, str] = {}
    live: set[str] = set()
    executions: list[Execution] = []
    for seq in range(1, draw(st.integers(min_value=1, max_value=8)) + 1):
        referable = sorted(exec_id for exec_id, trade_id in trade_of.items() if trade_id in live)
        kinds = [ExecType.TRADE] + ([ExecType.CORRECT, ExecType.BUST] if referable else [])
        kind = draw(st.sampled_from(kinds))
        exec_id = f"E{seq}"
        if kind is ExecType.TRADE:
            executions.append(trade(exec_id, seq, str(draw(_quantities)), str(draw(_prices))))
            trade_of[exec_id] = exec_id
            live.add(exec_id)
            continue
        reference = draw(st.sampled_from(referable))
        trade_of[exec_id] = trade_of[reference]
        if kind is ExecType.CORRECT:
            qty, px = str(draw(_quantities)), str(draw(_prices))
            executions.append(correct(exec_id, seq, reference, qty, px))
        else:
            executions.append(bust(exec_id, seq, reference))
            live.discard(trade_of[reference])
    return order, executions


Event = tuple[str, Order | Execution, object]


@st.composite
def _arrivals(draw: st.DrawFn) -> tuple[Order, list[Execution], list[Event], int]:
    """The history, plus the same records arriving shuffled, repeated, order anywhere."""
    order, executions = draw(_orders_with_executions())
    repeats = draw(st.lists(st.sampled_from(executions), max_size=4))
    shuffled = draw(st.permutations([*executions, *repeats]))
    events: list[Event] = [
        ("execution", execution, {"arrival": index}) for index, execution in enumerate(shuffled)
    ]
    events.insert(draw(st.integers(min_value=0, max_value=len(events))), ("order", order, None))
    return order, executions, events, len(repeats)


def _stored(state: OrderState) -> bytes:
    """The state's stored form, as the wiring writes it after every step: the dict form's
    JSON byte for byte, whether or not the order's part was encoded before."""
    stored = state.to_json()
    assert stored == orjson.dumps(state.to_dict())
    return stored


def _run(events: list[Event], *, reload_every_step: bool) -> tuple[list[Output], OrderState]:
    state = OrderState.new(ORDER_ID, T0)
    outputs: list[Output] = []
    for step, (kind, record, origin) in enumerate(events, start=1):
        if kind == "order":
            assert isinstance(record, Order)
            outputs += apply_order(state, record, at(step)).outputs
        else:
            assert isinstance(record, Execution)
            outputs += apply_execution(state, record, origin, at(step)).outputs
        stored = _stored(state)
        if reload_every_step:
            state = OrderState.from_dict(json.loads(stored))
    return outputs, state


def _without_time(outputs: list[Output]) -> list[Confirmation]:
    return [
        dataclasses.replace(output.confirmation, confirmed_at=T0)
        for output in outputs
        if isinstance(output, Confirmed)
    ]


def _in_seq_order(order: Order, executions: list[Execution]) -> list[Event]:
    return [("order", order, None)] + [("execution", e, None) for e in executions]


def _round_half_even(value: Fraction) -> Fraction:
    return Fraction(round(value * 10**8), 10**8)


@settings(max_examples=200, deadline=None)
@given(_arrivals(), st.booleans())
def test_arrival_order_and_repeats_do_not_change_confirmations(
    scenario: tuple[Order, list[Execution], list[Event], int], reload_every_step: bool
) -> None:
    order, executions, events, repeat_count = scenario
    expected, _ = _run(_in_seq_order(order, executions), reload_every_step=False)
    actual, state = _run(events, reload_every_step=reload_every_step)

    assert _without_time(actual) == _without_time(expected)
    assert [c.seq for c in _without_time(actual)] == list(range(1, len(executions) + 1))
    assert not any(isinstance(output, Rejected) for output in actual)
    assert actual.count(Dropped(DropKind.DUPLICATE)) == repeat_count
    assert state.duplicates_dropped == repeat_count
    assert state.held == {} and state.next_seq == len(executions) + 1


@settings(max_examples=200, deadline=None)
@given(_orders_with_executions())
def test_fill_figures_match_a_straightforward_recomputation(
    scenario: tuple[Order, list[Execution]],
) -> None:
    order, executions = scenario
    outputs, _ = _run(_in_seq_order(order, executions), reload_every_step=False)
    produced = _without_time(outputs)
    assert len(produced) == len(executions)

    fills: dict[str, tuple[Fraction, Fraction]] = {}
    target: dict[str, str] = {}
    for execution, confirmation in zip(executions, produced, strict=True):
        if execution.exec_type is ExecType.TRADE:
            target[execution.exec_id] = execution.exec_id
        else:
            assert execution.ref_exec_id is not None
            target[execution.exec_id] = target[execution.ref_exec_id]
        trade_id = target[execution.exec_id]
        if execution.exec_type is ExecType.BUST:
            del fills[trade_id]
        else:
            fills[trade_id] = (Fraction(execution.last_qty), Fraction(execution.last_px))
        cum = sum((qty for qty, _ in fills.values()), Fraction(0))
        notional = sum((qty * px for qty, px in fills.values()), Fraction(0))
        assert Fraction(confirmation.cum_qty) == cum
        assert Fraction(confirmation.leaves_qty) == max(Fraction(order.quantity) - cum, 0)
        expected_avg = _round_half_even(notional / cum) if cum else Fraction(0)
        assert Fraction(confirmation.avg_px) == expected_avg
        assert confirmation.order_qty == order.quantity


@settings(max_examples=200, deadline=None)
@given(_arrivals(), st.data())
def test_a_conflicting_repeat_is_always_rejected(
    scenario: tuple[Order, list[Execution], list[Event], int], data: st.DataObject
) -> None:
    _, executions, events, _ = scenario
    expected, _ = _run(events, reload_every_step=False)

    original = data.draw(st.sampled_from(executions))
    alterations: list[Execution] = [
        dataclasses.replace(original, last_px=original.last_px + Decimal("0.01")),
        dataclasses.replace(original, venue=original.venue + "-X"),
        dataclasses.replace(original, seq=original.seq + 100),
        dataclasses.replace(original, exec_time=at(-1)),
    ]
    altered = data.draw(st.sampled_from(alterations))
    first_seen = next(i for i, event in enumerate(events) if event[1] is original)
    position = data.draw(st.integers(min_value=first_seen + 1, max_value=len(events)))
    events.insert(position, ("execution", altered, "conflict"))

    actual, _ = _run(events, reload_every_step=False)
    rejected = [output for output in actual if isinstance(output, Rejected)]
    assert len(rejected) == 1
    assert rejected[0].reason is RejectReason.CONFLICTING_DUPLICATE
    assert rejected[0].origin == "conflict"
    assert _without_time(actual) == _without_time(expected)
