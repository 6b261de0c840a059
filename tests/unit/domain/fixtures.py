"""Builders for domain tests: valid records with one field changed at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from execdist.domain import (
    Confirmation,
    Confirmed,
    ExecType,
    Execution,
    Order,
    OrderType,
    Output,
    Rejected,
    Side,
    StatusNotice,
)

T0 = datetime(2024, 5, 1, 13, 30, tzinfo=UTC)
ORDER_ID = "ORD-1"


def at(seconds: float) -> datetime:
    """A time ``seconds`` after T0, so tests read as a timeline."""
    return T0 + timedelta(seconds=seconds)


def order_record(**overrides: object) -> dict[str, object]:
    """A valid order as decoded JSON."""
    record: dict[str, object] = {
        "order_id": ORDER_ID,
        "account": "ACC-7",
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": "100",
        "order_type": "LIMIT",
        "limit_price": "190.00",
        "currency": "USD",
        "version": 1,
        "event_time": "2024-05-01T13:29:00.000000Z",
    }
    record.update(overrides)
    return record


def execution_record(**overrides: object) -> dict[str, object]:
    """A valid TRADE as decoded JSON."""
    record: dict[str, object] = {
        "exec_id": "EX-1",
        "order_id": ORDER_ID,
        "seq": 1,
        "exec_type": "TRADE",
        "ref_exec_id": None,
        "last_qty": "40",
        "last_px": "187.45",
        "venue": "XNAS",
        "exec_time": "2024-05-01T13:30:00.123456Z",
    }
    record.update(overrides)
    return record


def make_order(
    quantity: str = "100", version: int = 1, order_id: str = ORDER_ID, side: Side = Side.BUY
) -> Order:
    return Order(
        order_id=order_id,
        account="ACC-7",
        symbol="AAPL",
        side=side,
        quantity=Decimal(quantity),
        order_type=OrderType.MARKET,
        limit_price=None,
        currency="USD",
        version=version,
        event_time=T0,
    )


def trade(exec_id: str, seq: int, qty: str, px: str, order_id: str = ORDER_ID) -> Execution:
    return Execution(
        exec_id=exec_id,
        order_id=order_id,
        seq=seq,
        exec_type=ExecType.TRADE,
        ref_exec_id=None,
        last_qty=Decimal(qty),
        last_px=Decimal(px),
        venue="XNAS",
        exec_time=T0,
    )


def correct(exec_id: str, seq: int, ref: str, qty: str, px: str) -> Execution:
    return Execution(
        exec_id=exec_id,
        order_id=ORDER_ID,
        seq=seq,
        exec_type=ExecType.CORRECT,
        ref_exec_id=ref,
        last_qty=Decimal(qty),
        last_px=Decimal(px),
        venue="XNAS",
        exec_time=T0,
    )


def bust(exec_id: str, seq: int, ref: str, qty: str = "0", px: str = "0") -> Execution:
    return Execution(
        exec_id=exec_id,
        order_id=ORDER_ID,
        seq=seq,
        exec_type=ExecType.BUST,
        ref_exec_id=ref,
        last_qty=Decimal(qty),
        last_px=Decimal(px),
        venue="XNAS",
        exec_time=T0,
    )


def confirmations(outputs: list[Output]) -> list[Confirmation]:
    return [output.confirmation for output in outputs if isinstance(output, Confirmed)]


def rejections(outputs: list[Output]) -> list[Rejected]:
    return [output for output in outputs if isinstance(output, Rejected)]


def notices(outputs: list[Output]) -> list[StatusNotice]:
    return [output for output in outputs if isinstance(output, StatusNotice)]


def confirmed_seqs(outputs: list[Output]) -> list[int]:
    return [confirmation.seq for confirmation in confirmations(outputs)]
