"""Builders for codec tests: sample records, and the in-process schema lookup seam."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

from execdist.codecs import ParsedSchema, UnknownSchemaId, parsed_schema
from execdist.domain import (
    Confirmation,
    ExecType,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    Side,
    format_decimal,
    format_time,
)

EXECUTION_SCHEMA_ID = 7
ORDER_SCHEMA_ID = 8
CONFIRMATION_SCHEMA_ID = 9


class DictSchemaLookup:
    """A SchemaLookup over a dict of parsed schemas, counting the lookups it answers.

    It stands in only for "id -> parsed schema"; the registry itself is exercised against the
    real one in tests/integration/test_registry.py.
    """

    def __init__(self, schemas: Mapping[int, ParsedSchema] | None = None) -> None:
        self.schemas = dict(
            schemas
            if schemas is not None
            else {
                EXECUTION_SCHEMA_ID: parsed_schema("execution"),
                ORDER_SCHEMA_ID: parsed_schema("order"),
                CONFIRMATION_SCHEMA_ID: parsed_schema("confirmation"),
            }
        )
        self.calls: list[int] = []

    async def get_schema(self, schema_id: int) -> ParsedSchema:
        self.calls.append(schema_id)
        if schema_id not in self.schemas:
            raise UnknownSchemaId(schema_id, f"schema id {schema_id} is not registered")
        return self.schemas[schema_id]


def sample_execution(**changes: object) -> Execution:
    values: dict[str, object] = {
        "exec_id": "EX-1",
        "order_id": "ORD-1",
        "seq": 1,
        "exec_type": ExecType.TRADE,
        "ref_exec_id": None,
        "last_qty": Decimal("40"),
        "last_px": Decimal("187.45"),
        "venue": "XNAS",
        "exec_time": datetime(2024, 5, 1, 13, 30, 0, 123456, tzinfo=UTC),
    }
    values.update(changes)
    return Execution(**values)  # type: ignore[arg-type]


def sample_order(**changes: object) -> Order:
    values: dict[str, object] = {
        "order_id": "ORD-1",
        "account": "ACC-7",
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": Decimal("100"),
        "order_type": OrderType.LIMIT,
        "limit_price": Decimal("190.5"),
        "currency": "USD",
        "version": 1,
        "event_time": datetime(2024, 5, 1, 13, 29, tzinfo=UTC),
    }
    values.update(changes)
    return Order(**values)  # type: ignore[arg-type]


def sample_confirmation(**changes: object) -> Confirmation:
    values: dict[str, object] = {
        "confirmation_id": "EX-2",
        "exec_id": "EX-2",
        "order_id": "ORD-1",
        "account": "ACC-7",
        "symbol": "AAPL",
        "side": Side.SELL_SHORT,
        "venue": "XNAS",
        "exec_type": ExecType.CORRECT,
        "ref_exec_id": "EX-1",
        "seq": 2,
        "last_qty": Decimal("35"),
        "last_px": Decimal("187.4"),
        "cum_qty": Decimal("35"),
        "leaves_qty": Decimal("65"),
        "avg_px": Decimal("187.40000001"),
        "order_qty": Decimal("100"),
        "order_status": OrderStatus.PARTIALLY_FILLED,
        "exec_time": datetime(2024, 5, 1, 13, 31, 0, 5, tzinfo=UTC),
        "confirmed_at": datetime(2024, 5, 1, 13, 31, 0, 900000, tzinfo=UTC),
    }
    values.update(changes)
    return Confirmation(**values)  # type: ignore[arg-type]


def as_json_ready(record: Mapping[str, object]) -> dict[str, object]:
    """An Avro-decoded record in the domain's JSON form, to compare with ``to_dict()``."""
    ready: dict[str, object] = {}
    for name, value in record.items():
        if isinstance(value, Decimal):
            ready[name] = format_decimal(value)
        elif isinstance(value, datetime):
            ready[name] = format_time(value)
        else:
            ready[name] = value
    return ready
