"""JSON inputs read by msgspec (``read_typed_json``) take and refuse exactly what the general
path (``decode_json``, then ``parse_order`` / ``parse_execution``) takes and refuses: the same
record, or the same error, or ``None`` (the general path then reads it)."""

from __future__ import annotations

import json

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from execdist.codecs.errors import DecodeError
from execdist.codecs.input import decode_json, read_typed_json
from execdist.domain import parse_execution, parse_order
from execdist.domain.errors import InvalidRecord

MISSING = object()
OFF = [None, MISSING, 5, 1.5, True, [1], {"nested": 1}]
"""Values of no field's JSON type, or no value at all."""


def field(good: tuple[object, ...], bad: tuple[object, ...]) -> st.SearchStrategy[object]:
    """Mostly a ``good`` value; one time in six a ``bad`` one (of the field's type, or an
    integer the typed path leaves to the general one); one in thirty null, missing or of
    another type. Most records then reach the typed path, a fair share with every field
    right."""
    return st.integers(0, 29).flatmap(
        lambda n: (
            st.sampled_from(OFF)
            if n == 0
            else st.sampled_from(bad)
            if n <= 5
            else st.sampled_from(good)
        )
    )


IDENTIFIERS = (("ORD-1", "EX-1", "EX-2", "XNAS", "x" * 128, "é\u0000"), ("", "   ", "x" * 129))
INTEGERS = ((1, 2, 7, 2**63 - 1), (0, -1, 2**63, 2**64 - 1, 2**64, 10**30, "1"))
DECIMALS = (
    ("25", "415.10", "0.000", "1e3", "1E+5", "0.00000001", 25, 10**17),
    ("0", "-3", "1E+30", "1.123456789", "12345678901234567890", " 1", "abc", "NaN", -5, 10**19),
)
TIMES = (
    ("2026-12-01T21:57:33.000000Z", "2026-12-01T21:57:33Z", "2026-12-01T23:57:33.5+02:00"),
    ("2026-12-01T21:57:33", "2026-12-01 21:57:33+00:00", "yesterday"),
)

executions = st.fixed_dictionaries(
    {
        "exec_id": field(*IDENTIFIERS),
        "order_id": field(*IDENTIFIERS),
        "seq": field(*INTEGERS),
        "exec_type": field(("TRADE", "TRADE", "CORRECT", "BUST"), ("trade", "FILL")),
        "ref_exec_id": st.sampled_from([None, None, None, MISSING, "EX-1", "EX-2", "", 5]),
        "last_qty": field(*DECIMALS),
        "last_px": field(*DECIMALS),
        "venue": field(*IDENTIFIERS),
        "exec_time": field(*TIMES),
        "extra": st.sampled_from([MISSING] * 19 + ["added by a producer", 1e308]),
    }
)
orders = st.fixed_dictionaries(
    {
        "order_id": field(*IDENTIFIERS),
        "account": field(*IDENTIFIERS),
        "symbol": field(*IDENTIFIERS),
        "side": field(("BUY", "SELL", "SELL_SHORT"), ("buy",)),
        "quantity": field(*DECIMALS),
        "order_type": field(("MARKET", "LIMIT"), ("STOP",)),
        "limit_price": st.one_of(st.sampled_from([None, MISSING]), field(*DECIMALS)),
        "currency": field(("USD", "EUR"), ("usd", "EURO", "")),
        "version": field(*INTEGERS),
        "event_time": field(*TIMES),
        "extra": st.sampled_from([MISSING] * 19 + ["added by a producer"]),
    }
)


def encoded(record: dict[str, object]) -> bytes:
    return json.dumps({k: v for k, v in record.items() if v is not MISSING}).encode()


def general(raw: bytes, *, order: bool) -> tuple[object, ...]:
    try:
        data = decode_json(raw)
    except DecodeError as exc:
        return ("not JSON", str(exc))
    try:
        parsed = parse_order(data) if order else parse_execution(data)
    except InvalidRecord as exc:
        return ("invalid", exc.field, str(exc))
    return ("read", repr(parsed))


def typed(raw: bytes, *, order: bool) -> tuple[object, ...] | None:
    try:
        parsed = read_typed_json(raw, order=order)
    except InvalidRecord as exc:
        return ("invalid", exc.field, str(exc))
    return None if parsed is None else ("read", repr(parsed))


def same_or_general(raw: bytes, *, order: bool) -> None:
    fast = typed(raw, order=order)
    if fast is not None:
        assert fast == general(raw, order=order), raw


VALID_EXECUTION = {
    "exec_id": "EX-2",
    "order_id": "ORD-1",
    "seq": 2,
    "exec_type": "TRADE",
    "ref_exec_id": None,
    "last_qty": "25",
    "last_px": "415.10",
    "venue": "XNAS",
    "exec_time": "2026-12-01T21:57:33.000000Z",
}
VALID_ORDER = {
    "order_id": "ORD-1",
    "account": "ACC-1",
    "symbol": "AAPL",
    "side": "BUY",
    "quantity": "100",
    "order_type": "LIMIT",
    "limit_price": "415.5",
    "currency": "USD",
    "version": 1,
    "event_time": "2026-12-01T21:57:33.000000Z",
}


@settings(max_examples=800)
@given(executions)
@example(VALID_EXECUTION | {"seq": 2**63})
@example(VALID_EXECUTION | {"last_qty": 2**64})
@example(VALID_EXECUTION | {"last_qty": "-3", "last_px": "abc"})  # two rules broken: the first
@example(VALID_EXECUTION | {"seq": 0, "exec_time": "yesterday"})
@example(VALID_EXECUTION | {"exec_type": "BUST", "ref_exec_id": "EX-2", "venue": ""})
def test_an_execution_is_read_the_same_either_way(record: dict[str, object]) -> None:
    same_or_general(encoded(record), order=False)


@settings(max_examples=800)
@given(orders)
@example(VALID_ORDER | {"version": 2**64})
@example(VALID_ORDER | {"quantity": "0", "currency": "usd"})
@example(VALID_ORDER | {"order_type": "MARKET", "version": 0})
@example(VALID_ORDER | {"symbol": " ", "event_time": "yesterday"})
def test_an_order_is_read_the_same_either_way(record: dict[str, object]) -> None:
    same_or_general(encoded(record), order=True)


@settings(max_examples=300)
@given(st.data())
def test_damaged_bytes_are_read_the_same_either_way(data: st.DataObject) -> None:
    order = data.draw(st.booleans())
    raw = bytearray(orjson.dumps(VALID_ORDER if order else VALID_EXECUTION))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    same_or_general(bytes(raw), order=order)


def test_duplicate_keys_count_the_last_either_way() -> None:
    raw = orjson.dumps(VALID_EXECUTION)[:-1] + b',"last_qty":"30"}'
    assert typed(raw, order=False) == general(raw, order=False)
    assert "Decimal('30')" in str(typed(raw, order=False))


def test_the_contracts_shape_takes_the_typed_path() -> None:
    """Not only ``None``: the common records are read by msgspec (and the same)."""
    for record, order in ((VALID_EXECUTION, False), (VALID_ORDER, True)):
        raw = orjson.dumps(record)
        assert typed(raw, order=order) is not None
        assert typed(raw, order=order) == general(raw, order=order)
    refused = orjson.dumps(VALID_EXECUTION | {"seq": 0})
    assert typed(refused, order=False) == general(refused, order=False)
    assert typed(refused, order=False) == ("invalid", "seq", "seq must be 1 or greater, got 0")


def test_what_the_typed_path_leaves_to_the_general_one() -> None:
    for raw in (
        b"",
        b"\x00\x00\x00\x00\x01rest",  # a Confluent frame (Avro)
        orjson.dumps(VALID_EXECUTION | {"added": 1}),
        orjson.dumps(VALID_EXECUTION | {"last_px": 415.1}),
        orjson.dumps({k: v for k, v in VALID_EXECUTION.items() if k != "venue"}),
        b"[1, 2]",
    ):
        assert read_typed_json(raw, order=False) is None, raw
