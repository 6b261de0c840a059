"""Positions: the change of one step of an order, and the figures it folds into.

The change is computed from the fills an execution changed only; these properties hold it to
its definition, the difference between the exact totals of the two snapshots of the order's
live fills, rounded once as the current decimal context rounds.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain.fills import Fill
from execdist.domain.model import Side
from execdist.domain.positions import (
    NO_FIGURES,
    Figures,
    PositionChange,
    fold_change,
    position_change,
    positions_from_stored,
    positions_to_stored,
)

_EXACT = decimal.Context(prec=200, traps=[decimal.Inexact])

# decimal(26,8) as the contract allows: products reach 52 digits, past the context's 28
_amounts = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("999999999999999999.99999999"), places=8
)
_fills = st.builds(Fill, _amounts, _amounts)
_snapshots = st.dictionaries(st.sampled_from([f"T{n}" for n in range(6)]), _fills, max_size=6)


def _by_definition(before: dict[str, Fill], after: dict[str, Fill]) -> tuple[Decimal, Decimal]:
    def totals(fills: dict[str, Fill]) -> tuple[Decimal, Decimal]:
        qty = notional = Decimal(0)
        for fill in fills.values():
            qty = _EXACT.add(qty, fill.qty)
            notional = _EXACT.add(notional, _EXACT.multiply(fill.qty, fill.px))
        return qty, notional

    (qty_before, notional_before), (qty_after, notional_after) = totals(before), totals(after)
    return qty_after - qty_before, notional_after - notional_before


@given(before=_snapshots, changes=_snapshots, busted=st.sets(st.sampled_from(["T0", "T1", "T2"])))
def test_the_change_is_the_difference_of_the_snapshots_totals(
    before: dict[str, Fill], changes: dict[str, Fill], busted: set[str]
) -> None:
    # the next snapshot keeps the unchanged fills as the same objects, as the join's does
    after = {**before, **changes}
    for trade_id in busted:
        after.pop(trade_id, None)
    qty, notional = _by_definition(before, after)
    change = position_change("ACC-1", "MSFT", Side.BUY, before, after)
    if qty == 0 and notional == 0:
        assert change is None
        return
    assert change is not None
    assert (change.qty, change.notional) == (qty, notional)


def test_an_unchanged_snapshot_moves_nothing() -> None:
    fills = {"T1": Fill(Decimal(25), Decimal("10.5")), "T2": Fill(Decimal(5), Decimal(11))}
    assert position_change("ACC-1", "MSFT", Side.BUY, fills, dict(fills)) is None
    # equal values as other objects (a correction that repeats the fill) move nothing either
    same = {"T1": Fill(Decimal("25.00"), Decimal("10.50")), "T2": fills["T2"]}
    assert position_change("ACC-1", "MSFT", Side.BUY, fills, same) is None


def test_a_bust_and_a_correction_move_the_position_back() -> None:
    before = {"T1": Fill(Decimal(25), Decimal("10.5")), "T2": Fill(Decimal(5), Decimal(11))}
    corrected = {**before, "T1": Fill(Decimal(20), Decimal("10.5"))}
    change = position_change("ACC-1", "MSFT", Side.SELL, before, corrected)
    assert change == PositionChange("ACC-1", "MSFT", Side.SELL, Decimal(-5), Decimal("-52.5"))
    busted = {"T1": corrected["T1"]}
    change = position_change("ACC-1", "MSFT", Side.SELL, corrected, busted)
    assert change == PositionChange("ACC-1", "MSFT", Side.SELL, Decimal(-5), Decimal(-55))


@given(
    changes=st.lists(
        st.tuples(st.sampled_from(list(Side)), _amounts, _amounts, st.booleans()), max_size=12
    )
)
def test_folding_decoded_figures_equals_folding_the_stored_strings(
    changes: list[tuple[Side, Decimal, Decimal, bool]],
) -> None:
    """The figures are kept decoded between commits; folding them gives what folding the
    stored strings change by change gives (the context rounds the same values the same way)."""
    decoded: dict[str, Figures] = {"MSFT": NO_FIGURES}
    stored = positions_to_stored(decoded)
    for side, qty, notional, negative in changes:
        if negative:
            qty, notional = -qty, -notional
        change = PositionChange("ACC-1", "MSFT", side, qty, notional)
        decoded["MSFT"] = fold_change(decoded["MSFT"], change)
        # the stored form's round trip at every change, as a commit after each would do
        folded = {
            symbol: fold_change(figures, change)
            for symbol, figures in positions_from_stored(stored).items()
        }
        stored = orjson.loads(orjson.dumps(positions_to_stored(folded)))
    assert positions_to_stored(decoded) == stored
    assert positions_from_stored(stored) == decoded


def test_the_stored_form_is_decimal_strings_per_side() -> None:
    figures = fold_change(
        fold_change(NO_FIGURES, PositionChange("A", "MSFT", Side.BUY, Decimal(25), Decimal(250))),
        PositionChange("A", "MSFT", Side.SELL_SHORT, Decimal(5), Decimal("48.75")),
    )
    assert positions_to_stored({"MSFT": figures}) == {
        "MSFT": {
            "bought_qty": "25",
            "bought_notional": "250",
            "sold_qty": "5",
            "sold_notional": "48.75",
        }
    }
