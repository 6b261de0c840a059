"""Fill arithmetic: cum_qty, leaves_qty, avg_px and order status from an order's live fills.

Everything is exact. Sums run in a local decimal context wide enough for any decimal(26,8)
values and with ``Inexact`` trapped, so an impossible rounding raises instead of silently
changing a figure. The average is divided in integers and rounded once, half-even, to eight
places: dividing in Decimal first and quantizing afterwards would round twice, and a quotient
such as 1.234567885000…01 could then come out as …88 instead of …89.

The summary is recomputed from all live fills each time rather than kept as running sums:
corrections and busts change earlier fills, and an order has few fills, so recomputing is both
cheap and obviously right.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from execdist.domain.model import OrderStatus
from execdist.domain.values import quick_init

__all__ = [
    "AVG_PX_PLACES",
    "Fill",
    "FillSummary",
    "add_exact",
    "average_price",
    "fill_totals",
    "order_status_for",
    "summarize_fills",
    "volume_weighted",
]

AVG_PX_PLACES = 8
"""Decimal places of avg_px, as the contract requires."""

# 26-digit operands give 52-digit products; 80 digits leaves room for summing billions of them.
_EXACT = decimal.Context(
    prec=80,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)
_ZERO = Decimal(0)


class Fill(NamedTuple):
    """One live fill of an order: the current quantity and price of a trade."""

    qty: Decimal
    px: Decimal


@quick_init
@dataclass(frozen=True, slots=True)
class FillSummary:
    """An order's fill state after applying its live fills."""

    cum_qty: Decimal
    leaves_qty: Decimal
    avg_px: Decimal
    order_status: OrderStatus


def summarize_fills(
    order_qty: Decimal, live_fills: Mapping[str, tuple[Decimal, Decimal]]
) -> FillSummary:
    """Compute the contract's fill figures over ``live_fills`` (trade exec_id -> (qty, px))."""
    cum_qty, notional = fill_totals(live_fills.values())
    leaves_qty = max(_EXACT.subtract(order_qty, cum_qty), _ZERO)
    avg_px = _average(notional, cum_qty)
    # by position (keywords cost about 40 ns each to match; this runs for every execution)
    return FillSummary(cum_qty, leaves_qty, avg_px, order_status_for(order_qty, cum_qty))


def average_price(fills: list[tuple[Decimal, Decimal]]) -> Decimal:
    """Σ(qty * px) / Σqty rounded half-even to 8 places; ``Decimal(0)`` when Σqty is 0."""
    cum_qty, notional = fill_totals(fills)
    return _average(notional, cum_qty)


def fill_totals(fills: Iterable[tuple[Decimal, Decimal]]) -> tuple[Decimal, Decimal]:
    """(Σqty, Σ qty * px), exact: the context's own methods, no context switch per fill."""
    add, multiply = _EXACT.add, _EXACT.multiply
    cum_qty = notional = _ZERO
    for qty, px in fills:
        cum_qty = add(cum_qty, qty)
        notional = add(notional, multiply(qty, px))
    return cum_qty, notional


def volume_weighted(quantity: Decimal, notional: Decimal) -> Decimal | None:
    """Notional over quantity as avg_px is rounded (8 places, half-even); ``None`` for no
    quantity."""
    return None if quantity == 0 else _average(notional, quantity)


def add_exact(total: Decimal, qty: Decimal, px: Decimal) -> Decimal:
    """``total + qty * px``, exact."""
    return _EXACT.add(total, _EXACT.multiply(qty, px))


def sum_exact(a: Decimal, b: Decimal) -> Decimal:
    """``a + b``, exact."""
    return _EXACT.add(a, b)


def difference_exact(a: Decimal, b: Decimal) -> Decimal:
    """``a - b``, exact."""
    return _EXACT.subtract(a, b)


def product_exact(qty: Decimal, px: Decimal) -> Decimal:
    """``qty * px``, exact."""
    return _EXACT.multiply(qty, px)


def _average(notional: Decimal, cum_qty: Decimal) -> Decimal:
    if cum_qty == 0:
        return _ZERO
    return _divide_half_even(notional, cum_qty, AVG_PX_PLACES)


def order_status_for(order_qty: Decimal, cum_qty: Decimal) -> OrderStatus:
    """UNFILLED at zero, FILLED at exactly the order quantity, OVERFILLED beyond it."""
    if cum_qty == 0:
        return OrderStatus.UNFILLED
    if cum_qty < order_qty:
        return OrderStatus.PARTIALLY_FILLED
    if cum_qty == order_qty:
        return OrderStatus.FILLED
    return OrderStatus.OVERFILLED


def _divide_half_even(numerator: Decimal, denominator: Decimal, places: int) -> Decimal:
    """numerator / denominator rounded once, half-even, to ``places`` decimal places."""
    # exact rationals: value = (a / b) / (c / d) = a·d / (b·c); we want round(value · 10^places)
    a, b = numerator.as_integer_ratio()
    c, d = denominator.as_integer_ratio()
    num_int = a * d * 10**places
    den_int = b * c
    if den_int < 0:
        num_int, den_int = -num_int, -den_int
    quotient, remainder = divmod(num_int, den_int)  # floor division: 0 <= remainder < den
    twice = 2 * remainder
    if twice > den_int or (twice == den_int and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-places, _EXACT)
