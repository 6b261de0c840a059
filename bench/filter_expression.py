"""What one ``filter.expr`` evaluation costs the router, and what compiling one costs.

Run ``python -m bench.filter_expression``. Compiles the issue's example expression
``symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 1000000`` and evaluates it on one
confirmation (a match, so every part runs) in a tight loop; prints microseconds per
evaluation and milliseconds per (uncached) compilation. A micro-benchmark of the hot-path
check only: the routing index decides how often it runs (only for candidates its equality
terms let through).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from execdist.domain import expressions
from execdist.domain.model import Confirmation, ExecType, OrderStatus, Side

SOURCE = 'symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 1000000'


def _confirmation() -> Confirmation:
    now = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
    return Confirmation(
        confirmation_id="EX-1",
        exec_id="EX-1",
        order_id="ORD-1",
        account="ACC-1",
        symbol="AAPL",
        side=Side.BUY,
        venue="XNAS",
        exec_type=ExecType.TRADE,
        ref_exec_id=None,
        seq=1,
        last_qty=Decimal("7000"),
        last_px=Decimal("187.45"),
        cum_qty=Decimal("7000"),
        leaves_qty=Decimal(0),
        avg_px=Decimal("187.45"),
        order_qty=Decimal("7000"),
        order_status=OrderStatus.FILLED,
        exec_time=now,
        confirmed_at=now,
    )


def main() -> None:
    record = _confirmation()
    expression = expressions.compile_expression(SOURCE)
    assert expression.matches(record)
    rounds = 500_000
    started = time.perf_counter()
    for _ in range(rounds):
        expression.matches(record)
    per_eval_us = (time.perf_counter() - started) / rounds * 1e6
    compiles = 300
    started = time.perf_counter()
    for i in range(compiles):
        expressions.compile_expression(SOURCE + " " * (i + 1))  # distinct texts: no cache hit
    per_compile_ms = (time.perf_counter() - started) / compiles * 1e3
    print(f"evaluate: {per_eval_us:.2f} us   compile: {per_compile_ms:.3f} ms   ({SOURCE})")


if __name__ == "__main__":
    main()
