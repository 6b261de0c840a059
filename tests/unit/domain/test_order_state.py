"""The per-order join: sequencing, dedup, corrections, busts, gaps, orphans, expiry, storage."""

from __future__ import annotations

import base64
import copy
import json
import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain import (
    Confirmation,
    DropKind,
    Dropped,
    ExecType,
    InvalidOrigin,
    InvalidState,
    MisroutedEvent,
    OrderState,
    OrderStatus,
    Output,
    RejectReason,
    Side,
    StatusType,
    apply_execution,
    apply_order,
    is_expired,
    next_tick_due,
    on_tick,
    order_view,
    stored_state_expired,
)
from execdist.domain.model import Execution, format_decimal
from execdist.domain.order_state import RecordOrigin, require_json_compatible
from tests.unit.codecs.fixtures import sample_confirmation
from tests.unit.domain.fixtures import (
    ORDER_ID,
    T0,
    at,
    bust,
    confirmations,
    confirmed_seqs,
    correct,
    make_order,
    notices,
    rejections,
    trade,
)

GAP = timedelta(seconds=5)
ORPHAN = timedelta(seconds=30)


def _new_state() -> OrderState:
    return OrderState.new(ORDER_ID, T0)


def _with_order(quantity: str = "100") -> OrderState:
    state = _new_state()
    apply_order(state, make_order(quantity), T0)
    return state


def _origin(execution: Execution) -> dict[str, object]:
    return {"offset": execution.seq, "value": f"raw-{execution.exec_id}"}


def _feed(state: OrderState, *executions: Execution, seconds: float = 1) -> list[Output]:
    outputs: list[Output] = []
    for execution in executions:
        outputs += apply_execution(state, execution, _origin(execution), at(seconds)).outputs
    return outputs


def test_transitions_update_the_state_in_place_and_return_it() -> None:
    state = _new_state()
    step = apply_order(state, make_order(), T0)
    assert step.state is state
    assert state.order == make_order()
    step = apply_execution(state, trade("T1", 1, "10", "5"), None, at(1))
    assert step.state is state


def test_in_order_trades_are_confirmed_with_fill_state() -> None:
    state = _with_order("100")
    outputs = apply_execution(state, trade("T1", 1, "40", "187.45"), "o1", at(1)).outputs
    [first] = confirmations(outputs)
    assert first == Confirmation(
        confirmation_id="T1",
        exec_id="T1",
        order_id=ORDER_ID,
        account="ACC-7",
        symbol="AAPL",
        side=Side.BUY,
        venue="XNAS",
        exec_type=ExecType.TRADE,
        ref_exec_id=None,
        seq=1,
        last_qty=Decimal("40"),
        last_px=Decimal("187.45"),
        cum_qty=Decimal("40"),
        leaves_qty=Decimal("60"),
        avg_px=Decimal("187.45"),
        order_qty=Decimal("100"),
        order_status=OrderStatus.PARTIALLY_FILLED,
        exec_time=T0,
        confirmed_at=at(1),
    )
    [second] = confirmations(_feed(state, trade("T2", 2, "60", "187.50")))
    assert (second.cum_qty, second.leaves_qty, second.avg_px) == (
        Decimal("100"),
        Decimal("0"),
        Decimal("187.48"),
    )
    assert second.order_status is OrderStatus.FILLED
    assert state.next_seq == 3
    assert state.confirmation_count == 2
    assert state.last_confirmed_status is OrderStatus.FILLED


def test_confirmation_json_form() -> None:
    state = _with_order("100")
    [confirmation] = confirmations(_feed(state, trade("T1", 1, "40", "187.45")))
    as_dict = confirmation.to_dict()
    assert list(as_dict) == [
        "confirmation_id",
        "exec_id",
        "order_id",
        "account",
        "symbol",
        "side",
        "venue",
        "exec_type",
        "ref_exec_id",
        "seq",
        "last_qty",
        "last_px",
        "cum_qty",
        "leaves_qty",
        "avg_px",
        "order_qty",
        "order_status",
        "exec_time",
        "confirmed_at",
        "anomaly",
    ]
    assert as_dict["anomaly"] is None  # the join alone flags nothing; see test_anomalies
    assert as_dict["avg_px"] == "187.45"
    assert as_dict["leaves_qty"] == "60"
    assert as_dict["side"] == "BUY"
    assert as_dict["exec_time"] == "2024-05-01T13:30:00.000000Z"
    assert as_dict["confirmed_at"] == "2024-05-01T13:30:01.000000Z"
    assert Confirmation.from_dict(json.loads(json.dumps(as_dict))) == confirmation


def test_out_of_order_seq_is_held_then_released_in_order() -> None:
    state = _with_order()
    assert _feed(state, trade("T3", 3, "1", "1"), trade("T2", 2, "1", "1")) == []
    assert sorted(state.held) == [2, 3]
    assert state.gap_since == at(1)
    outputs = _feed(state, trade("T1", 1, "1", "1"), seconds=2)
    assert confirmed_seqs(outputs) == [1, 2, 3]
    assert [c.cum_qty for c in confirmations(outputs)] == [1, 2, 3]
    assert state.held == {}
    assert state.gap_since is None
    assert state.next_seq == 4


def test_executions_before_the_order_wait_for_it() -> None:
    state = _new_state()
    assert _feed(state, trade("T2", 2, "1", "2"), trade("T1", 1, "1", "1")) == []
    assert state.gap_since is None  # no order yet: an orphan question, not a gap
    outputs = apply_order(state, make_order("10"), at(3)).outputs
    assert confirmed_seqs(outputs) == [1, 2]
    assert all(c.confirmed_at == at(3) for c in confirmations(outputs))
    assert confirmations(outputs)[-1].avg_px == Decimal("1.5")


def test_order_arrival_with_a_gap_starts_the_gap_clock() -> None:
    state = _new_state()
    _feed(state, trade("T1", 1, "1", "1"), trade("T3", 3, "1", "1"))
    outputs = apply_order(state, make_order(), at(4)).outputs
    assert confirmed_seqs(outputs) == [1]
    assert sorted(state.held) == [3]
    assert state.gap_since == at(4)


def test_amendment_changes_order_qty_and_leaves_of_later_confirmations() -> None:
    state = _with_order("100")
    [before] = confirmations(_feed(state, trade("T1", 1, "40", "10")))
    assert before.leaves_qty == Decimal("60")
    step = apply_order(state, make_order("150", version=2), at(2))
    assert step.outputs == []  # an amendment alone confirms nothing
    assert state.order is not None and state.order.quantity == Decimal("150")
    [after] = confirmations(_feed(state, trade("T2", 2, "10", "10"), seconds=3))
    assert after.order_qty == Decimal("150")
    assert after.leaves_qty == Decimal("100")
    assert after.cum_qty == Decimal("50")


@pytest.mark.parametrize("replayed_version", [1, 2])
def test_stale_order_replay_is_dropped(replayed_version: int) -> None:
    state = _new_state()
    apply_order(state, make_order("100", version=2), T0)
    outputs = apply_order(state, make_order("999", version=replayed_version), at(1)).outputs
    assert outputs == [Dropped(DropKind.STALE_ORDER)]
    assert state.order is not None and state.order.quantity == Decimal("100")
    assert state.stale_orders_ignored == 1


def test_identical_duplicate_of_applied_execution_is_dropped() -> None:
    state = _with_order()
    _feed(state, trade("T1", 1, "40", "10"))
    outputs = _feed(state, trade("T1", 1, "40", "10"), seconds=2)
    assert outputs == [Dropped(DropKind.DUPLICATE)]
    assert state.duplicates_dropped == 1
    assert state.confirmation_count == 1


def test_identical_duplicate_of_held_execution_is_dropped() -> None:
    state = _new_state()
    _feed(state, trade("T1", 1, "40", "10"))
    assert _feed(state, trade("T1", 1, "40", "10")) == [Dropped(DropKind.DUPLICATE)]
    assert len(state.held) == 1


def test_same_values_spelled_differently_are_identical() -> None:
    state = _with_order()
    _feed(state, trade("T1", 1, "40", "10"))
    respelled = Execution(
        exec_id="T1",
        order_id=ORDER_ID,
        seq=1,
        exec_type=ExecType.TRADE,
        ref_exec_id=None,
        last_qty=Decimal("40.00000000"),
        last_px=Decimal("1E+1"),
        venue="XNAS",
        exec_time=T0.astimezone(timezone(timedelta(hours=-4))),
    )
    assert _feed(state, respelled) == [Dropped(DropKind.DUPLICATE)]


@pytest.mark.parametrize("order_first", [True, False])
def test_conflicting_duplicate_is_rejected_with_its_origin(order_first: bool) -> None:
    state = _with_order() if order_first else _new_state()
    _feed(state, trade("T1", 1, "40", "10"))
    outputs = apply_execution(state, trade("T1", 1, "40", "10.01"), "second", at(2)).outputs
    [rejected] = rejections(outputs)
    assert rejected.reason is RejectReason.CONFLICTING_DUPLICATE
    assert rejected.origin == "second"
    assert "'T1'" in rejected.message and "different content" in rejected.message
    assert len(outputs) == 1


@pytest.mark.parametrize("order_first", [True, False])
def test_seq_taken_by_another_exec_id_is_rejected(order_first: bool) -> None:
    state = _with_order() if order_first else _new_state()
    _feed(state, trade("T1", 1, "40", "10"), trade("T3", 3, "1", "1"))
    for seq, owner in [(1, "T1"), (3, "T3")]:
        outputs = apply_execution(state, trade(f"X{seq}", seq, "1", "1"), "x", at(2)).outputs
        [rejected] = rejections(outputs)
        assert rejected.reason is RejectReason.CONFLICTING_DUPLICATE
        assert f"already taken by exec_id {owner!r}" in rejected.message
    assert "X1" not in state.seen and "X3" not in state.seen


def test_correction_replaces_quantity_and_price() -> None:
    state = _with_order("100")
    _feed(state, trade("T1", 1, "40", "10"), trade("T2", 2, "20", "20"))
    [corrected] = confirmations(_feed(state, correct("C1", 3, "T1", "30", "11")))
    assert corrected.exec_type is ExecType.CORRECT
    assert corrected.ref_exec_id == "T1"
    assert corrected.cum_qty == Decimal("50")
    assert corrected.avg_px == Decimal("14.6")  # (30*11 + 20*20) / 50
    assert state.live_fills["T1"] == (Decimal("30"), Decimal("11"))


def test_correction_of_a_correction_resolves_to_the_trade() -> None:
    state = _with_order("100")
    _feed(state, trade("T1", 1, "40", "10"), correct("C1", 2, "T1", "30", "11"))
    [again] = confirmations(_feed(state, correct("C2", 3, "C1", "25", "12")))
    assert again.cum_qty == Decimal("25")
    assert again.avg_px == Decimal("12")
    assert list(state.live_fills) == ["T1"]
    [busted] = confirmations(_feed(state, bust("B1", 4, "C2")))
    assert busted.cum_qty == 0
    assert state.live_fills == {}


def test_bust_removes_the_fill() -> None:
    state = _with_order("100")
    _feed(state, trade("T1", 1, "40", "10"), trade("T2", 2, "60", "20"))
    [busted] = confirmations(_feed(state, bust("B1", 3, "T2", "60", "20")))
    assert busted.exec_type is ExecType.BUST
    assert (busted.cum_qty, busted.leaves_qty, busted.avg_px) == (
        Decimal("40"),
        Decimal("60"),
        Decimal("10"),
    )
    assert busted.order_status is OrderStatus.PARTIALLY_FILLED
    [last] = confirmations(_feed(state, bust("B2", 4, "T1")))
    assert (last.cum_qty, last.avg_px, last.order_status) == (
        Decimal(0),
        Decimal(0),
        OrderStatus.UNFILLED,
    )
    assert last.to_dict()["avg_px"] == "0"


@pytest.mark.parametrize(
    ("second", "fragment"),
    [
        (bust("B2", 3, "T1"), "already been busted"),
        (correct("C1", 3, "T1", "1", "1"), "already been busted"),
        (bust("B2", 3, "B1"), "already been busted"),
        (bust("B2", 3, "NOPE"), "not an earlier applied execution"),
        (correct("C1", 3, "T9", "1", "1"), "not an earlier applied execution"),
    ],
)
def test_unknown_or_busted_reference_is_rejected_but_takes_its_seq(
    second: Execution, fragment: str
) -> None:
    state = _with_order("100")
    _feed(state, trade("T1", 1, "40", "10"), bust("B1", 2, "T1"))
    outputs = apply_execution(state, second, "bad", at(2)).outputs
    [rejected] = rejections(outputs)
    assert rejected.reason is RejectReason.UNKNOWN_REFERENCE
    assert rejected.origin == "bad"
    assert fragment in rejected.message
    assert confirmations(outputs) == []
    assert state.next_seq == 4  # the order does not stall
    assert confirmed_seqs(_feed(state, trade("T4", 4, "1", "1"))) == [4]
    # the refused exec_id is remembered: identical repeat dropped, altered one conflicting
    assert apply_execution(state, second, "bad", at(3)).outputs == [Dropped(DropKind.DUPLICATE)]
    altered = trade(second.exec_id, 3, "1", "1")
    [conflict] = rejections(apply_execution(state, altered, "alt", at(3)).outputs)
    assert conflict.reason is RejectReason.CONFLICTING_DUPLICATE


def test_held_reference_released_after_its_target_is_applied() -> None:
    state = _new_state()
    _feed(state, correct("C1", 2, "T1", "5", "2"), trade("T1", 1, "10", "1"))
    outputs = apply_order(state, make_order("10"), at(2)).outputs
    assert rejections(outputs) == []
    assert confirmations(outputs)[-1].cum_qty == Decimal("5")


def test_overfill_is_reported_when_it_starts() -> None:
    state = _with_order("100")
    outputs = _feed(state, trade("T1", 1, "100", "10"), trade("T2", 2, "20", "10"))
    assert confirmations(outputs)[-1].order_status is OrderStatus.OVERFILLED
    assert confirmations(outputs)[-1].leaves_qty == 0
    [notice] = notices(outputs)
    assert notice.type is StatusType.OVERFILL
    assert notice.details == {
        "order_id": ORDER_ID,
        "order_qty": "100",
        "cum_qty": "120",
        "exec_id": "T2",
    }
    assert outputs[-1] == notice  # after the confirmation that caused it
    # still overfilled: no second notice
    assert notices(_feed(state, trade("T3", 3, "1", "10"))) == []
    # back under, then over again: a new notice
    assert notices(_feed(state, bust("B1", 4, "T1"))) == []  # cum 21 of 100
    [again] = notices(_feed(state, trade("T5", 5, "80", "10")))  # cum 101
    assert again.details["exec_id"] == "T5"


def _state_with_gap() -> OrderState:
    state = _with_order("100")
    _feed(state, trade("T1", 1, "1", "1"), seconds=0)
    _feed(state, trade("T3", 3, "1", "1"), trade("T5", 5, "1", "1"), trade("T6", 6, "1", "1"))
    return state


def test_gap_is_tolerated_until_the_timeout() -> None:
    state = _state_with_gap()
    assert state.gap_since == at(1)
    assert on_tick(state, at(5.9), gap_timeout=GAP, orphan_timeout=ORPHAN).outputs == []
    assert sorted(state.held) == [3, 5, 6]


def test_gap_timeout_reports_and_releases_held_executions_in_order() -> None:
    state = _state_with_gap()
    outputs = on_tick(state, at(6), gap_timeout=GAP, orphan_timeout=ORPHAN).outputs
    [notice] = notices(outputs)
    assert outputs[0] == notice
    assert notice.type is StatusType.SEQUENCE_GAP
    assert notice.details == {
        "order_id": ORDER_ID,
        "expected_seq": 2,
        "missing_seqs": [2, 4],
        "missing_count": 2,
        "released_seqs": [3, 5, 6],
    }
    assert confirmed_seqs(outputs) == [3, 5, 6]
    assert state.next_seq == 7
    assert state.held == {}
    assert state.gap_since is None
    assert state.last_activity == at(6)


def test_late_arrival_of_a_skipped_seq_is_still_applied() -> None:
    state = _state_with_gap()
    on_tick(state, at(6), gap_timeout=GAP, orphan_timeout=ORPHAN)
    outputs = _feed(state, trade("T4", 4, "2", "4"), seconds=7)
    assert confirmed_seqs(outputs) == [4]
    assert confirmations(outputs)[0].cum_qty == Decimal("6")
    [late] = notices(outputs)
    assert late.type is StatusType.SEQUENCE_GAP
    assert late.details == {"order_id": ORDER_ID, "late_seq": 4, "exec_id": "T4", "late": True}
    # seq 4 is now taken; seq 2 is still open for its late execution
    [taken] = rejections(_feed(state, trade("X4", 4, "1", "1")))
    assert taken.reason is RejectReason.CONFLICTING_DUPLICATE
    assert confirmed_seqs(_feed(state, trade("T2", 2, "1", "1"))) == [2]
    assert state.skipped == []


def test_gap_notice_lists_a_bounded_number_of_missing_seqs() -> None:
    state = _with_order()
    _feed(state, trade("FAR", 1_000_000, "1", "1"))
    [notice] = notices(on_tick(state, at(10), gap_timeout=GAP, orphan_timeout=ORPHAN).outputs)
    assert notice.details["missing_count"] == 999_999
    assert len(notice.details["missing_seqs"]) == 1000  # type: ignore[arg-type]
    assert len(state.skipped) == 1  # stored as a range, not a million numbers


def test_orphans_are_rejected_after_the_timeout_and_forgotten() -> None:
    state = _new_state()
    apply_execution(state, trade("T1", 1, "1", "1"), {"offset": 11}, at(0))
    apply_execution(state, trade("T2", 2, "1", "1"), {"offset": 12}, at(20))
    assert on_tick(state, at(29), gap_timeout=GAP, orphan_timeout=ORPHAN).outputs == []
    outputs = on_tick(state, at(30), gap_timeout=GAP, orphan_timeout=ORPHAN).outputs
    [orphan] = rejections(outputs)
    assert orphan.reason is RejectReason.ORPHAN_EXECUTION
    assert orphan.origin == {"offset": 11}
    assert "'T1'" in orphan.message and ORDER_ID in orphan.message
    assert sorted(state.held) == [2]
    assert "T1" not in state.seen
    # a redelivery of the forgotten execution is judged afresh, not dropped as a duplicate
    assert apply_execution(state, trade("T1", 1, "1", "1"), "again", at(31)).outputs == []
    assert sorted(state.held) == [1, 2]


def test_timeouts_are_judged_against_how_far_the_inputs_are_read() -> None:
    """An input written before ``read_until`` has been read; one written after may still come,
    so a timeout is only judged up to there, and what it releases is applied at ``now``."""
    state = _state_with_gap()  # the gap opened at 1 s
    outputs = on_tick(state, at(60), gap_timeout=GAP, orphan_timeout=ORPHAN, read_until=at(5.9))
    assert outputs.outputs == [], "the missing seq may have been written after 5.9 s"
    outputs = on_tick(state, at(60), gap_timeout=GAP, orphan_timeout=ORPHAN, read_until=at(6))
    assert confirmed_seqs(outputs.outputs) == [3, 5, 6]
    assert {c.confirmed_at for c in confirmations(outputs.outputs)} == {at(60)}
    assert state.last_activity == at(60)

    orphan = _new_state()
    apply_execution(orphan, trade("T1", 1, "1", "1"), None, at(0))
    held = on_tick(orphan, at(99), gap_timeout=GAP, orphan_timeout=ORPHAN, read_until=at(29))
    assert held.outputs == [] and sorted(orphan.held) == [1]
    later = on_tick(orphan, at(99), gap_timeout=GAP, orphan_timeout=ORPHAN, read_until=at(30))
    assert [r.reason for r in rejections(later.outputs)] == [RejectReason.ORPHAN_EXECUTION]
    # never judged past now, whatever a clock running ahead stamped on the inputs
    assert (
        on_tick(
            _state_with_gap(), at(5), gap_timeout=GAP, orphan_timeout=ORPHAN, read_until=at(60)
        ).outputs
        == []
    )


def test_orphan_timeout_does_not_apply_once_the_order_is_present() -> None:
    state = _state_with_gap()
    outputs = on_tick(state, at(3), gap_timeout=timedelta(hours=1), orphan_timeout=ORPHAN)
    assert outputs.outputs == []
    outputs = on_tick(state, at(300), gap_timeout=timedelta(hours=1), orphan_timeout=ORPHAN)
    assert outputs.outputs == []


def test_next_tick_due() -> None:
    state = _new_state()
    assert next_tick_due(state, gap_timeout=GAP, orphan_timeout=ORPHAN) is None
    apply_execution(state, trade("T2", 2, "1", "1"), None, at(10))
    assert next_tick_due(state, gap_timeout=GAP, orphan_timeout=ORPHAN) == at(40)
    apply_order(state, make_order(), at(12))
    assert next_tick_due(state, gap_timeout=GAP, orphan_timeout=ORPHAN) == at(17)
    apply_execution(state, trade("T1", 1, "1", "1"), None, at(13))
    assert next_tick_due(state, gap_timeout=GAP, orphan_timeout=ORPHAN) is None


def test_expiry_needs_nothing_held_and_retention_elapsed() -> None:
    retention = timedelta(days=1)
    state = _with_order()
    _feed(state, trade("T1", 1, "100", "1"), seconds=10)
    assert not is_expired(state, at(10) + retention - timedelta(microseconds=1), retention)
    assert is_expired(state, at(10) + retention, retention)
    _feed(state, trade("T3", 3, "1", "1"), seconds=20)
    assert not is_expired(state, at(20) + retention * 10, retention)


@pytest.mark.parametrize("held", [False, True])
@pytest.mark.parametrize("idle", [timedelta(0), timedelta(days=1) - timedelta(microseconds=1)])
def test_stored_expiry_agrees_with_the_state(held: bool, idle: timedelta) -> None:
    retention = timedelta(days=1)
    state = _with_order()
    _feed(state, trade("T1", 1, "100", "1"), seconds=10)
    if held:
        _feed(state, trade("T3", 3, "1", "1"), seconds=10)
    stored = json.loads(json.dumps(state.to_dict()))
    for now in (at(10) + idle, at(10) + retention + idle):
        assert stored_state_expired(stored, now, retention) == is_expired(state, now, retention)
    assert stored_state_expired(stored, at(10) + retention, retention) is not held


@pytest.mark.parametrize(
    "stored", [{}, {"held": [], "last_activity": 5}, {"held": [], "last_activity": "noon"}]
)
def test_stored_expiry_refuses_what_is_not_a_state(stored: dict[str, object]) -> None:
    with pytest.raises(InvalidState):
        stored_state_expired(stored, T0, timedelta(days=1))


def test_misrouted_events_are_refused() -> None:
    state = _new_state()
    with pytest.raises(MisroutedEvent):
        apply_order(state, make_order(order_id="OTHER"), T0)
    with pytest.raises(MisroutedEvent):
        apply_execution(state, trade("T1", 1, "1", "1", order_id="OTHER"), None, T0)


@pytest.mark.parametrize("origin", [b"raw", {1: "x"}, float("nan"), {"a": [object()]}])
def test_origin_must_be_json_compatible(origin: object) -> None:
    with pytest.raises(InvalidOrigin):
        apply_execution(_new_state(), trade("T1", 1, "1", "1"), origin, T0)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_any_json_value_is_accepted_as_an_origin_and_survives_a_round_trip(origin) -> None:
    require_json_compatible(origin)
    assert json.loads(json.dumps(origin)) == origin


@given(json_values, st.sampled_from([b"raw", float("inf"), (1, 2), {3: "x"}, object()]))
def test_one_non_json_part_anywhere_is_refused_with_its_path(origin, bad) -> None:
    with pytest.raises(InvalidOrigin, match=r"origin\[\'inner\'\]"):
        require_json_compatible({"inner": bad, "rest": origin})


@given(st.binary() | st.none(), st.binary() | st.none())
def test_a_record_origin_is_taken_in_as_is_and_stored_as_its_base64_json_form(key, value) -> None:
    origin = RecordOrigin("execdist.executions", 3, 41, key, value)
    state = _new_state()
    apply_execution(state, trade("T2", 2, "1", "1"), origin, T0)  # seq 2 before 1: held
    assert state.held[2].origin is origin

    stored = state.to_dict()["held"][0]["origin"]  # type: ignore[index]

    assert stored == origin.to_dict()
    assert json.loads(json.dumps(stored)) == stored
    assert (stored["key"], stored["value"]) == (
        None if key is None else base64.b64encode(key).decode(),
        None if value is None else base64.b64encode(value).decode(),
    )
    restored = OrderState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.held[2].origin == stored
    assert RecordOrigin.from_dict(restored.held[2].origin) == origin  # type: ignore[arg-type]


def _busy_state() -> OrderState:
    """A state using every field: held origins, skipped seqs, gap clock, fills, counters."""
    state = _state_with_gap()
    on_tick(state, at(6), gap_timeout=GAP, orphan_timeout=ORPHAN)
    _feed(state, correct("C7", 7, "T3", "2", "1.5"), bust("B8", 8, "T5"), seconds=7)
    _feed(state, trade("T10", 10, "1", "1"), seconds=8)
    apply_execution(state, trade("T11", 11, "1", "1"), {"b64": "AAE=", "n": [1, None]}, at(8))
    _feed(state, trade("T10", 10, "1", "1"), seconds=9)  # duplicate of a held execution
    apply_order(state, make_order("100", version=1), at(9))  # stale
    apply_order(state, make_order("90", version=2), at(9))
    return state


def test_state_round_trips_through_json() -> None:
    state = _busy_state()
    stored = json.dumps(state.to_dict())
    restored = OrderState.from_dict(json.loads(stored))
    assert restored == state
    assert restored.to_dict() == state.to_dict()
    assert restored.held[11].origin == {"b64": "AAE=", "n": [1, None]}
    assert restored.skipped == state.skipped and restored.skipped
    assert restored.gap_since == at(8)
    assert restored.last_activity.tzinfo is not None
    assert (restored.duplicates_dropped, restored.stale_orders_ignored) == (1, 1)


def test_restored_state_behaves_like_the_original() -> None:
    original = _busy_state()
    restored = OrderState.from_dict(json.loads(json.dumps(original.to_dict())))
    steps = [
        apply_execution(state, trade("T9", 9, "3", "3"), "nine", at(20))
        for state in (original, restored)
    ]
    assert original == restored
    assert steps[0].outputs == steps[1].outputs
    assert [c.seq for c in confirmations(steps[1].outputs)] == [9, 10, 11]


def test_the_stored_json_is_the_dict_form_encoded() -> None:
    origin = RecordOrigin("execdist.executions", 0, 12, b"key", b"value")
    waiting = _new_state()
    apply_execution(waiting, trade("T1", 1, "1", "1"), origin, T0)  # held for its order
    for state in (_new_state(), waiting, _with_order(), _busy_state()):
        assert state.to_json() == orjson.dumps(state.to_dict())
        assert state.to_json() == orjson.dumps(state.to_dict())  # the order's JSON reused


def test_the_stored_json_follows_each_version_of_the_order() -> None:
    state = _with_order("100")
    _feed(state, trade("T1", 1, "40", "10"))
    first = state.to_json()
    apply_order(state, make_order("90", version=2), at(2))
    assert state.to_json() == orjson.dumps(state.to_dict()) != first
    assert OrderState.from_dict(orjson.loads(state.to_json())).order == make_order("90", version=2)


def test_the_order_json_kept_by_a_state_leaves_its_equality_repr_and_copies_alone() -> None:
    encoded, fresh = _busy_state(), _busy_state()
    encoded.to_json()
    assert encoded == fresh
    assert repr(encoded) == repr(fresh)
    assert OrderState.from_dict(orjson.loads(encoded.to_json())) == encoded
    for copied in (copy.deepcopy(encoded), pickle.loads(pickle.dumps(encoded))):
        assert copied == encoded
        assert copied.to_json() == encoded.to_json()


def test_format_1_states_are_still_read() -> None:
    state = _with_order()
    outputs = _feed(state, trade("T1", 1, "40", "10"), trade("T2", 2, "60", "10"))
    stored = state.to_dict()
    assert stored.pop("confirmation_count") == 2
    assert stored.pop("last_confirmed_status") == "FILLED"
    embedded = [c.to_dict() for c in confirmations(outputs)]
    legacy = {**stored, "format": 1, "confirmations": embedded}
    assert OrderState.from_dict(json.loads(json.dumps(legacy))) == state


@pytest.mark.parametrize(
    "corrupt",
    [
        {},
        {"format": 99},
        {"format": 1, "order_id": 5},
    ],
)
def test_unreadable_state_raises_invalid_state(corrupt: dict[str, object]) -> None:
    with pytest.raises(InvalidState):
        OrderState.from_dict(corrupt)


def test_corrupt_field_raises_invalid_state() -> None:
    stored = _busy_state().to_dict()
    stored["live_fills"] = {"T1": {"qty": "abc", "px": "1"}}
    with pytest.raises(InvalidState):
        OrderState.from_dict(stored)


def test_order_view_for_the_query_api() -> None:
    state = _busy_state()
    view = order_view(state)
    assert view["order_id"] == ORDER_ID
    assert view["order_status"] == "PARTIALLY_FILLED"
    assert view["cum_qty"] == "4"  # T1 1 + T3 corrected to 2 + T6 1; T5 busted; 10, 11 held
    assert view["leaves_qty"] == "86"
    assert view["last_seq"] == 8
    held = view["held_executions"]
    assert isinstance(held, list)
    assert [item["seq"] for item in held] == [10, 11]
    json.dumps(view)
    empty = order_view(_new_state())
    assert empty["order"] is None and empty["cum_qty"] is None


def test_times_are_stored_in_utc() -> None:
    state = _with_order()
    assert state.to_dict()["last_activity"] == T0.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_format_time_gives_one_spelling_per_instant_and_refuses_naive_times() -> None:
    from execdist.domain.model import format_time

    utc = datetime(2024, 5, 1, 13, 30, 0, 5, tzinfo=UTC)
    assert format_time(utc) == "2024-05-01T13:30:00.000005Z"
    # the same instant in another zone: the same text (it may come from the memo)
    assert (
        format_time(utc.astimezone(timezone(timedelta(hours=2)))) == "2024-05-01T13:30:00.000005Z"
    )
    assert format_time(utc) == "2024-05-01T13:30:00.000005Z"
    with pytest.raises(ValueError, match="naive"):
        format_time(utc.replace(tzinfo=None))  # even right after its UTC twin was formatted


def test_format_time_tells_apart_the_two_instants_of_a_repeated_local_hour() -> None:
    from zoneinfo import ZoneInfo

    from execdist.domain.model import format_time

    # 01:30 happens twice in New York on 2024-11-03; within one zone the two compare equal
    first = datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(fold=1)
    assert format_time(first) == "2024-11-03T05:30:00.000000Z"
    assert format_time(second) == "2024-11-03T06:30:00.000000Z"
    assert format_time(first) == "2024-11-03T05:30:00.000000Z"


@pytest.mark.parametrize("text", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_format_decimal_refuses_non_finite_decimals(text: str) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        format_decimal(Decimal(text))


@given(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=8),
)
def test_a_confirmation_spells_its_figures_as_format_decimal_does(
    quantity: Decimal, price: Decimal
) -> None:
    # figures the join works out anew are new objects: spelled from their str, not their hash
    body = sample_confirmation(
        cum_qty=quantity, leaves_qty=-quantity, avg_px=price.copy_abs()
    ).to_dict()
    assert body["cum_qty"] == format_decimal(quantity)
    assert body["leaves_qty"] == format_decimal(-quantity)
    assert body["avg_px"] == format_decimal(price.copy_abs())


@pytest.mark.parametrize(
    ("figure", "text"),
    [("0E-8", "0"), ("-0", "0"), ("1E+2", "100"), ("1E-7", "0.0000001"), ("415.10000000", "415.1")],
)
def test_a_confirmation_spells_each_form_of_a_figure_in_plain_notation(
    figure: str, text: str
) -> None:
    assert sample_confirmation(avg_px=Decimal(figure)).to_dict()["avg_px"] == text
