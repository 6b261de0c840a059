"""Positions per account and symbol, built from changes in an order's live fills.

A confirmation alone cannot move a position correctly: a CORRECT replaces an earlier fill and a
BUST removes one, so the position needs the difference between the order's live fills before
and after. The join computes that :class:`PositionChange`; the positions table (keyed by
account) folds the changes with :func:`apply_change`. SELL and SELL_SHORT count as sold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from execdist.domain.fills import Fill, fill_totals
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
    """The change between two snapshots of one order's live fills, or ``None`` if nothing moved."""
    qty_before, notional_before = fill_totals(before.values())
    qty_after, notional_after = fill_totals(after.values())
    qty, notional = qty_after - qty_before, notional_after - notional_before
    if qty == ZERO and notional == ZERO:
        return None
    return PositionChange(account, symbol, side, qty, notional)


def apply_change(
    positions: Mapping[str, Mapping[str, str]], change: PositionChange
) -> dict[str, dict[str, str]]:
    """Fold a change into an account's positions (symbol -> figures as decimal strings)."""
    result = {symbol: dict(figures) for symbol, figures in positions.items()}
    figures = result.setdefault(
        change.symbol,
        {"bought_qty": "0", "bought_notional": "0", "sold_qty": "0", "sold_notional": "0"},
    )
    prefix = "bought" if change.side is Side.BUY else "sold"
    figures[f"{prefix}_qty"] = format_decimal(Decimal(figures[f"{prefix}_qty"]) + change.qty)
    figures[f"{prefix}_notional"] = format_decimal(
        Decimal(figures[f"{prefix}_notional"]) + change.notional
    )
    return result


def position_view(account: str, positions: Mapping[str, Mapping[str, str]]) -> dict[str, object]:
    """JSON-ready answer for ``GET /api/v1/positions/{account}``."""
    symbols = []
    for symbol in sorted(positions):
        figures = positions[symbol]
        net = Decimal(figures["bought_qty"]) - Decimal(figures["sold_qty"])
        symbols.append({"symbol": symbol, "net_qty": format_decimal(net), **figures})
    return {"account": account, "positions": symbols}
