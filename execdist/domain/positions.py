"""Positions per account and symbol, built from changes in an order's live fills.

A confirmation alone cannot move a position correctly: a CORRECT replaces an earlier fill and a
BUST removes one, so the position needs the difference between the order's live fills before
and after. The join computes that :class:`PositionChange`; the positions table (keyed by
account) folds the changes into an account's :class:`Figures` per symbol with
:func:`fold_change`. SELL and SELL_SHORT count as sold. The stored form
(:func:`positions_to_stored`) holds the figures as decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from execdist.domain.fills import Fill, add_exact, difference_exact, product_exact, sum_exact
from execdist.domain.model import Side, format_decimal
from execdist.domain.values import quick_init

ZERO = Decimal(0)


@quick_init
@dataclass(frozen=True, slots=True)
class PositionChange:
    """How one order's live fills moved in one step of the join."""

    account: str
    symbol: str
    side: Side
    qty: Decimal
    """Change of the order's live quantity (negative after a bust or a downward correction)."""
    notional: Decimal
    """Change of the order's Σ qty * px over live fills."""

    def to_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value,
            "qty": format_decimal(self.qty),
            "notional": format_decimal(self.notional),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PositionChange:
        return cls(
            account=str(data["account"]),
            symbol=str(data["symbol"]),
            side=Side(str(data["side"])),
            qty=Decimal(str(data["qty"])),
            notional=Decimal(str(data["notional"])),
        )


def position_change(
    account: str,
    symbol: str,
    side: Side,
    before: Mapping[str, Fill],
    after: Mapping[str, Fill],
) -> PositionChange | None:
    """The change between two snapshots of one order's live fills, or ``None`` if nothing moved.

    Summed over the fills that differ only (a fill left as it was is the same object in both
    snapshots), exactly, then rounded once in the current context: the difference of the two
    snapshots' exact totals, at the cost of the one or two fills an execution changes.
    """
    qty = notional = ZERO
    kept = 0
    for trade_id, fill in after.items():
        old = before.get(trade_id)
        if old is None:
            qty = sum_exact(qty, fill.qty)
            notional = add_exact(notional, fill.qty, fill.px)
            continue
        kept += 1
        if old is not fill and old != fill:  # corrected: the new fill in, the old one out
            qty = difference_exact(sum_exact(qty, fill.qty), old.qty)
            notional = difference_exact(
                add_exact(notional, fill.qty, fill.px), product_exact(old.qty, old.px)
            )
    if kept < len(before):  # a fill was busted
        for trade_id, old in before.items():
            if trade_id not in after:
                qty = difference_exact(qty, old.qty)
                notional = difference_exact(notional, product_exact(old.qty, old.px))
    qty, notional = +qty, +notional
    if qty == ZERO and notional == ZERO:
        return None
    return PositionChange(account, symbol, side, qty, notional)


class Figures(NamedTuple):
    """One account's position in one symbol."""

    bought_qty: Decimal = ZERO
    bought_notional: Decimal = ZERO
    sold_qty: Decimal = ZERO
    sold_notional: Decimal = ZERO


NO_FIGURES = Figures()


def fold_change(figures: Figures, change: PositionChange) -> Figures:
    """``figures`` with ``change`` added to its side."""
    bought_qty, bought_notional, sold_qty, sold_notional = figures
    if change.side is Side.BUY:
        return Figures(
            bought_qty + change.qty, bought_notional + change.notional, sold_qty, sold_notional
        )
    return Figures(
        bought_qty, bought_notional, sold_qty + change.qty, sold_notional + change.notional
    )


def positions_from_stored(stored: Mapping[str, Mapping[str, str]]) -> dict[str, Figures]:
    """An account's figures per symbol from their stored form."""
    return {
        symbol: Figures(
            Decimal(figures["bought_qty"]),
            Decimal(figures["bought_notional"]),
            Decimal(figures["sold_qty"]),
            Decimal(figures["sold_notional"]),
        )
        for symbol, figures in stored.items()
    }


def positions_to_stored(positions: Mapping[str, Figures]) -> dict[str, dict[str, str]]:
    """The stored form of an account's figures: symbol -> figures as decimal strings."""
    return {
        symbol: {
            "bought_qty": format_decimal(figures.bought_qty),
            "bought_notional": format_decimal(figures.bought_notional),
            "sold_qty": format_decimal(figures.sold_qty),
            "sold_notional": format_decimal(figures.sold_notional),
        }
        for symbol, figures in positions.items()
    }


def position_view(account: str, positions: Mapping[str, Mapping[str, str]]) -> dict[str, object]:
    """JSON-ready answer for ``GET /api/v1/positions/{account}``."""
    symbols = []
    for symbol in sorted(positions):
        figures = positions[symbol]
        net = Decimal(figures["bought_qty"]) - Decimal(figures["sold_qty"])
        symbols.append({"symbol": symbol, "net_qty": format_decimal(net), **figures})
    return {"account": account, "positions": symbols}
