"""Fill arithmetic: cum_qty, leaves_qty, avg_px and order status from an order's live fills.

Everything is exact. Sums run in a local decimal context wide enough for any decimal(26,8)
values and with ``Inexact`` trapped, so an impossible rounding raises instead of silently
changing a figure. The average is rounded once, half-even, to eight places. A division to some
precision quantized afterwards would round twice, and a quotient such as 1.234567885000…01
could then come out as …88 instead of …89; so the division rounds ``ROUND_05UP``, the rounding
made for rounding again: its last digit is 0 or 5 only when the quotient is exact, so a
quotient kept to nine places or more never lands on a tie or an eight-place value it does
not equal, and stays on the same side of each as the exact quotient.

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
# The average's division and its one rounding (see the module docstring). An average lies
# between its least and greatest price, under 10^18 in decimal(26,8): far inside the 72 integer
# digits that these precisions keep exact (_divide_half_even).
_FOR_REROUNDING = decimal.Context(
    prec=81,
    rounding=decimal.ROUND_05UP,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)
_ROUNDING = decimal.Context(
    prec=80,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)
_AVG_PX_STEP = Decimal(1).scaleb(-AVG_PX_PLACES)


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
    return _divide_half_even(notional, cum_qty)


def order_status_for(order_qty: Decimal, cum_qty: Decimal) -> OrderStatus:
    """UNFILLED at zero, FILLED at exactly the order quantity, OVERFILLED beyond it."""
    if cum_qty == 0:
        return OrderStatus.UNFILLED
    if cum_qty < order_qty:
        return OrderStatus.PARTIALLY_FILLED
    if cum_qty == order_qty:
        return OrderStatus.FILLED
    return OrderStatus.OVERFILLED


def _divide_half_even(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator rounded once, half-even, to ``AVG_PX_PLACES`` decimal places.

    Exact for a quotient of up to 72 integer digits, for which the division keeps at least nine
    places; a wider one makes the quantize raise InvalidOperation (more than 80 digits) rather
    than round twice."""
    quotient = _FOR_REROUNDING.divide(numerator, denominator)
    return quotient.quantize(_AVG_PX_STEP, context=_ROUNDING)
