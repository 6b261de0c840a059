"""Fill arithmetic, exact to the last decimal."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execdist.domain import (
    Fill,
    OrderStatus,
    average_price,
    format_decimal,
    order_status_for,
    summarize_fills,
)


def _fills(*pairs: tuple[str, str]) -> dict[str, Fill]:
    return {f"T{index}": Fill(Decimal(qty), Decimal(px)) for index, (qty, px) in enumerate(pairs)}


def test_single_fill() -> None:
    summary = summarize_fills(Decimal("100"), _fills(("40", "187.45")))
    assert summary.cum_qty == Decimal("40")
    assert summary.leaves_qty == Decimal("60")
    assert summary.avg_px == Decimal("187.45")
    assert summary.avg_px.as_tuple().exponent == -8  # quantized to 8 places
    assert summary.order_status is OrderStatus.PARTIALLY_FILLED


def test_weighted_average_over_several_fills() -> None:
    summary = summarize_fills(Decimal("100"), _fills(("40", "187.45"), ("60", "187.50")))
    assert summary.cum_qty == Decimal("100")
    assert summary.leaves_qty == Decimal("0")
    # (40 * 187.45 + 60 * 187.50) / 100 = 18748 / 100
    assert summary.avg_px == Decimal("187.48000000")
    assert summary.order_status is OrderStatus.FILLED


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ((("1", "1.00000001"), ("1", "1.00000002")), "1.00000002"),  # ...015 -> even 2
        ((("1", "1.00000002"), ("1", "1.00000003")), "1.00000002"),  # ...025 -> even 2
        ((("1", "0.00000001"), ("1", "0")), "0"),  # 0.000000005 -> even 0
        ((("1", "0.00000003"), ("1", "0")), "0.00000002"),  # 0.000000015 -> even 2
        ((("1", "1"), ("2", "0")), "0.33333333"),
        ((("1", "0"), ("2", "1")), "0.66666667"),
        ((("3", "0.00000001"),), "0.00000001"),
        ((("0.5", "3"), ("0.25", "7")), "4.33333333"),
    ],
)
def test_avg_px_rounds_half_even_to_eight_places(
    pairs: tuple[tuple[str, str], ...], expected: str
) -> None:
    assert average_price([(Decimal(qty), Decimal(px)) for qty, px in pairs]) == Decimal(expected)


def test_avg_px_at_and_just_above_a_tie() -> None:
    two_fills = [(Decimal("3"), Decimal("1.23456789")), (Decimal("1"), Decimal("1.23456787"))]
    # (3 * 1.23456789 + 1.23456787) / 4 = 1.234567885 exactly: a tie, half-even -> ...88
    assert average_price(two_fills) == Decimal("1.23456788")
    # a tiny extra fill lifts the quotient just above the tie (4.93827156 / 4.00000001) -> ...89
    three_fills = [*two_fills, (Decimal("0.00000001"), Decimal("2"))]
    assert average_price(three_fills) == Decimal("1.23456789")


def test_zero_cum_gives_zero_avg_and_unfilled() -> None:
    summary = summarize_fills(Decimal("100"), {})
    assert summary.cum_qty == 0
    assert summary.leaves_qty == Decimal("100")
    assert summary.avg_px == Decimal("0")
    assert format_decimal(summary.avg_px) == "0"
    assert summary.order_status is OrderStatus.UNFILLED


def test_overfill_has_zero_leaves() -> None:
    summary = summarize_fills(Decimal("100"), _fills(("70", "10"), ("50", "11")))
    assert summary.cum_qty == Decimal("120")
    assert summary.leaves_qty == Decimal("0")
    assert summary.order_status is OrderStatus.OVERFILLED
    assert summary.avg_px == Decimal("10.41666667")


@pytest.mark.parametrize(
    ("order_qty", "cum_qty", "status"),
    [
        ("100", "0", OrderStatus.UNFILLED),
        ("100", "0.00000001", OrderStatus.PARTIALLY_FILLED),
        ("100", "99.99999999", OrderStatus.PARTIALLY_FILLED),
        ("100", "100.00000000", OrderStatus.FILLED),
        ("100", "100.00000001", OrderStatus.OVERFILLED),
    ],
)
def test_order_status(order_qty: str, cum_qty: str, status: OrderStatus) -> None:
    assert order_status_for(Decimal(order_qty), Decimal(cum_qty)) is status


def test_widest_values_stay_exact() -> None:
    big = Decimal("999999999999999999.99999999")
    summary = summarize_fills(big, _fills((str(big), str(big)), (str(big), "0.00000001")))
    assert summary.cum_qty == big * 2
    expected = (Fraction(big) * Fraction(big) + Fraction(big) * Fraction("0.00000001")) / (
        2 * Fraction(big)
    )
    assert Fraction(summary.avg_px) == _round_half_even(expected)


def _round_half_even(value: Fraction) -> Fraction:
    scaled = value * 10**8
    return Fraction(round(scaled), 10**8)  # round() on Fraction is half-even


_quantities = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1e12"), places=8)
_prices = st.decimals(min_value=Decimal(0), max_value=Decimal("1e9"), places=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_quantities, _prices), max_size=12), _quantities)
def test_summary_matches_rational_arithmetic(
    pairs: list[tuple[Decimal, Decimal]], order_qty: Decimal
) -> None:
    summary = summarize_fills(order_qty, {str(index): pair for index, pair in enumerate(pairs)})
    cum = sum((Fraction(qty) for qty, _ in pairs), Fraction(0))
    assert Fraction(summary.cum_qty) == cum
    assert Fraction(summary.leaves_qty) == max(Fraction(order_qty) - cum, Fraction(0))
    if cum == 0:
        assert summary.avg_px == 0
    else:
        notional = sum((Fraction(qty) * Fraction(px) for qty, px in pairs), Fraction(0))
        assert Fraction(summary.avg_px) == _round_half_even(notional / cum)


_eight_places = st.decimals(min_value=Decimal(0), max_value=Decimal("1e9"), places=8)


@settings(max_examples=300, deadline=None)
@given(
    _eight_places,
    _quantities,
    st.sampled_from(["0", "0.00000001", "0.0000000001"]),
    st.sampled_from([Decimal(0), Decimal("1e-8"), Decimal("2e9")]),
)
def test_avg_px_at_and_around_ties_matches_rational_rounding(
    price: Decimal, qty: Decimal, nudge_qty: str, nudge_px: Decimal
) -> None:
    """Two equal fills a tick apart average to a tie exactly; a tiny third fill moves it just
    below or just above. Each must round as the exact rational does, to exactly eight places."""
    pairs = [(qty, price), (qty, price + Decimal("0.00000001"))]
    if nudge_qty != "0":
        pairs.append((Decimal(nudge_qty), nudge_px))
    average = average_price(pairs)
    cum = sum((Fraction(q) for q, _ in pairs), Fraction(0))
    notional = sum((Fraction(q) * Fraction(p) for q, p in pairs), Fraction(0))
    assert Fraction(average) == _round_half_even(notional / cum)
    assert average.as_tuple().exponent == -8
