"""parse_order / parse_execution: every rule, accepted and refused, with a helpful message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain import (
    DomainError,
    ExecDistError,
    ExecType,
    InvalidRecord,
    OrderType,
    Side,
    format_decimal,
    format_time,
    parse_execution,
    parse_order,
)
from tests.unit.domain.fixtures import execution_record, order_record


def _refused_order(**overrides: object) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse_order(order_record(**overrides))
    return caught.value


def _refused_execution(**overrides: object) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        parse_execution(execution_record(**overrides))
    return caught.value


def test_valid_json_order_is_parsed_to_exact_types() -> None:
    order = parse_order(order_record())
    assert order.order_id == "ORD-1"
    assert order.side is Side.BUY
    assert order.order_type is OrderType.LIMIT
    assert order.quantity == Decimal("100")
    assert order.limit_price == Decimal("190")
    assert order.event_time == datetime(2024, 5, 1, 13, 29, tzinfo=UTC)
    assert order.event_time.tzinfo is UTC


def test_valid_avro_style_values_are_accepted() -> None:
    order = parse_order(
        order_record(
            quantity=Decimal("100.00000000"),
            limit_price=Decimal("190.50000000"),
            event_time=datetime(2024, 5, 1, 15, 29, tzinfo=timezone(timedelta(hours=2))),
        )
    )
    assert order.quantity == Decimal("100")
    assert str(order.limit_price) == "190.5"  # canonical: trailing zeros dropped
    assert order.event_time == datetime(2024, 5, 1, 13, 29, tzinfo=UTC)
    assert order.event_time.utcoffset() == timedelta(0)


def test_unknown_extra_fields_are_ignored() -> None:
    assert parse_order(order_record(note="hello")).order_id == "ORD-1"
    assert parse_execution(execution_record(extra=[1, 2])).exec_id == "EX-1"


def test_invalid_record_is_a_domain_and_execdist_error() -> None:
    error = _refused_order(side="HOLD")
    assert isinstance(error, DomainError)
    assert isinstance(error, ExecDistError)


def test_unknown_side_message_lists_allowed_values() -> None:
    error = _refused_order(side="HOLD")
    assert error.field == "side"
    assert error.message == "side must be one of BUY, SELL, SELL_SHORT, got 'HOLD'"
    assert str(error) == error.message


@pytest.mark.parametrize("side", ["buy", " BUY", "Buy", 1, None])
def test_enums_need_the_exact_name(side: object) -> None:
    assert _refused_order(side=side).field == "side"


@pytest.mark.parametrize(
    "field",
    [
        "order_id",
        "account",
        "symbol",
        "side",
        "quantity",
        "order_type",
        "currency",
        "version",
        "event_time",
    ],
)
def test_missing_order_field_is_refused(field: str) -> None:
    record = order_record()
    del record[field]
    with pytest.raises(InvalidRecord) as caught:
        parse_order(record)
    assert caught.value.field == field
    assert caught.value.message == f"{field} is required"


@pytest.mark.parametrize(
    "field",
    ["exec_id", "order_id", "seq", "exec_type", "last_qty", "last_px", "venue", "exec_time"],
)
def test_missing_execution_field_is_refused(field: str) -> None:
    record = execution_record()
    del record[field]
    with pytest.raises(InvalidRecord) as caught:
        parse_execution(record)
    assert caught.value.field == field


def test_null_required_field_is_refused() -> None:
    error = _refused_order(account=None)
    assert error.field == "account"
    assert "must not be null" in error.message


@pytest.mark.parametrize("record", [[], "text", 42])
def test_non_object_record_is_refused(record: object) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_order(record)  # type: ignore[arg-type]
    assert caught.value.field is None


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("100", Decimal("100")),
        ("0.00000001", Decimal("0.00000001")),
        ("1.500000000", Decimal("1.5")),  # trailing zeros do not count as precision
        ("123456789012345678.12345678", Decimal("123456789012345678.12345678")),
        ("1E+2", Decimal("100")),
        (7, Decimal("7")),
        (Decimal("2.5"), Decimal("2.5")),
    ],
)
def test_good_quantities(quantity: object, expected: Decimal) -> None:
    parsed = parse_order(order_record(quantity=quantity)).quantity
    assert parsed == expected
    assert "E" not in format_decimal(parsed)


@pytest.mark.parametrize(
    ("quantity", "fragment"),
    [
        (100.5, "binary floats and inexact"),
        (100.0, "binary floats and inexact"),
        ("NaN", "finite decimal"),
        ("Infinity", "finite decimal"),
        ("-inf", "finite decimal"),
        (Decimal("NaN"), "finite number"),
        (Decimal("Infinity"), "finite number"),
        ("1" * 40, "at most 18 digits before the decimal point and 8 after"),
        ("1234567890123456789", "at most 18 digits"),
        ("0.000000001", "at most 18 digits before the decimal point and 8 after"),
        ("1e999999999", "at most 18 digits"),
        ("1e-999999999", "at most 18 digits"),
        ("-5", "greater than 0"),
        ("0", "greater than 0"),
        ("12,5", "finite decimal"),
        ("1_000", "finite decimal"),
        (" 10", "finite decimal"),
        ("١٢", "finite decimal"),
        ("", "finite decimal"),
        (True, "boolean"),
        ([1], "decimal string"),
    ],
)
def test_bad_quantities(quantity: object, fragment: str) -> None:
    error = _refused_order(quantity=quantity)
    assert error.field == "quantity"
    assert fragment in error.message


@given(
    st.decimals(min_value=0, max_value=Decimal("999999999999999999.99999999"), places=8),
    st.integers(min_value=0, max_value=3),
    st.booleans(),
)
def test_a_decimal_is_read_in_its_one_canonical_form(
    value: Decimal, zeros: int, scientific: bool
) -> None:
    """Whatever the spelling: no trailing fractional zeros, no positive exponent, one zero."""
    mantissa, e, power = (f"{value:E}" if scientific else f"{value:f}").partition("E")
    if zeros:
        mantissa += ("" if "." in mantissa else ".") + "0" * zeros
    parsed = parse_execution(execution_record(last_px=mantissa + e + power)).last_px
    assert parsed == value
    _sign, digits, exponent = parsed.as_tuple()
    assert isinstance(exponent, int)
    assert exponent <= 0
    assert exponent == 0 or digits[-1] != 0
    if value == 0:
        assert parsed.as_tuple() == Decimal(0).as_tuple()


def test_limit_order_needs_positive_limit_price() -> None:
    assert _refused_order(limit_price=None).message == "limit_price is required for LIMIT orders"
    record = order_record()
    del record["limit_price"]
    with pytest.raises(InvalidRecord):
        parse_order(record)
    assert "greater than 0" in _refused_order(limit_price="0").message
    assert "greater than 0" in _refused_order(limit_price="-1").message


def test_market_order_has_no_limit_price() -> None:
    order = parse_order(order_record(order_type="MARKET", limit_price=None))
    assert order.limit_price is None
    record = order_record(order_type="MARKET")
    del record["limit_price"]
    assert parse_order(record).limit_price is None
    error = _refused_order(order_type="MARKET", limit_price="5")
    assert error.field == "limit_price"
    assert error.message == "limit_price must be null for MARKET orders, got 5"


@pytest.mark.parametrize("currency", ["usd", "US", "USDT", "U5D", 840, None])
def test_bad_currency(currency: object) -> None:
    assert _refused_order(currency=currency).field == "currency"


@pytest.mark.parametrize(
    ("version", "ok"),
    [(1, True), (7, True), (0, False), (-1, False), (True, False), ("2", False), (2.0, False)],
)
def test_version_is_a_real_int_from_one(version: object, ok: bool) -> None:
    if ok:
        assert parse_order(order_record(version=version)).version == version
    else:
        assert _refused_order(version=version).field == "version"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", ""),
        ("order_id", "   "),
        ("order_id", "x" * 129),
        ("order_id", 12),
        ("account", ""),
        ("symbol", None),
    ],
)
def test_bad_identifiers(field: str, value: object) -> None:
    assert _refused_order(**{field: value}).field == field


def test_identifier_of_128_chars_is_fine() -> None:
    assert parse_order(order_record(order_id="x" * 128)).order_id == "x" * 128


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T13:30:00Z", datetime(2024, 5, 1, 13, 30, tzinfo=UTC)),
        ("2024-05-01T13:30:00.123456Z", datetime(2024, 5, 1, 13, 30, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T15:30:00+02:00", datetime(2024, 5, 1, 13, 30, tzinfo=UTC)),
        ("2024-05-01T13:30:00.5+00:00", datetime(2024, 5, 1, 13, 30, 0, 500000, tzinfo=UTC)),
    ],
)
def test_good_times_are_converted_to_utc(text: str, expected: datetime) -> None:
    assert parse_execution(execution_record(exec_time=text)).exec_time == expected


_SPELLINGS = [
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # already as the outputs write it
    lambda t: t.isoformat(timespec="microseconds"),  # +00:00
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S,%fZ"),  # a comma before the fraction
    lambda t: t.astimezone(timezone(timedelta(hours=-5))).isoformat(timespec="microseconds"),
    lambda t: t.strftime("%Y%m%dT%H%M%S.%fZ"),  # ISO-8601 basic format
]


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31)),
    st.sampled_from(range(len(_SPELLINGS))),
)
def test_any_spelling_of_a_time_is_written_out_in_the_one_canonical_form(
    moment: datetime, spelling: int
) -> None:
    instant = moment.replace(tzinfo=UTC)
    text = _SPELLINGS[spelling](instant)
    execution = parse_execution(execution_record(exec_time=text))
    canonical = instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert execution.exec_time == instant
    assert format_time(execution.exec_time) == canonical
    assert execution.to_dict()["exec_time"] == canonical


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2024-05-01T13:30:00", "must include a timezone"),
        (datetime(2024, 5, 1, 13, 30), "must include a timezone"),
        ("yesterday", "ISO-8601"),
        (1714570200, "ISO-8601 time string"),
    ],
)
def test_bad_times(value: object, fragment: str) -> None:
    error = _refused_execution(exec_time=value)
    assert error.field == "exec_time"
    assert fragment in error.message


def test_valid_trade() -> None:
    execution = parse_execution(execution_record())
    assert execution.exec_type is ExecType.TRADE
    assert execution.ref_exec_id is None
    assert execution.last_qty == Decimal("40")
    assert execution.last_px == Decimal("187.45")


@pytest.mark.parametrize(
    ("seq", "ok"),
    [
        (1, True),
        (10**12, True),
        (0, False),
        (-3, False),
        (False, False),
        (1.0, False),
        ("1", False),
    ],
)
def test_seq_is_a_real_int_from_one(seq: object, ok: bool) -> None:
    if ok:
        assert parse_execution(execution_record(seq=seq)).seq == seq
    else:
        assert _refused_execution(seq=seq).field == "seq"


def test_trade_must_not_refer_to_anything() -> None:
    error = _refused_execution(ref_exec_id="EX-0")
    assert error.field == "ref_exec_id"
    assert "must be null for a TRADE" in error.message


@pytest.mark.parametrize("exec_type", ["CORRECT", "BUST"])
def test_correct_and_bust_need_a_reference(exec_type: str) -> None:
    assert _refused_execution(exec_type=exec_type).field == "ref_exec_id"
    assert _refused_execution(exec_type=exec_type, ref_exec_id="").field == "ref_exec_id"
    assert (
        "cannot refer to itself"
        in _refused_execution(exec_type=exec_type, ref_exec_id="EX-1").message
    )
    parsed = parse_execution(execution_record(exec_type=exec_type, ref_exec_id="EX-0"))
    assert parsed.ref_exec_id == "EX-0"


@pytest.mark.parametrize(
    ("exec_type", "last_qty", "ok"),
    [
        ("TRADE", "1", True),
        ("TRADE", "0", False),
        ("TRADE", "-1", False),
        ("CORRECT", "0", False),
        ("CORRECT", "5", True),
        ("BUST", "0", True),
        ("BUST", "40", True),
        ("BUST", "-1", False),
    ],
)
def test_last_qty_rules_depend_on_exec_type(exec_type: str, last_qty: str, ok: bool) -> None:
    reference = None if exec_type == "TRADE" else "EX-0"
    overrides: dict[str, object] = {
        "exec_type": exec_type,
        "ref_exec_id": reference,
        "last_qty": last_qty,
    }
    if ok:
        assert parse_execution(execution_record(**overrides)).last_qty == Decimal(last_qty)
    else:
        assert _refused_execution(**overrides).field == "last_qty"


@pytest.mark.parametrize(
    ("last_px", "ok"), [("0", True), ("187.45", True), ("-0.01", False), (187.45, False)]
)
def test_price_is_not_negative_and_not_a_float(last_px: object, ok: bool) -> None:
    if ok:
        parse_execution(execution_record(last_px=last_px))
    else:
        assert _refused_execution(last_px=last_px).field == "last_px"


def test_unknown_exec_type() -> None:
    error = _refused_execution(exec_type="FILL")
    assert error.message == "exec_type must be one of TRADE, CORRECT, BUST, got 'FILL'"


def test_first_bad_field_in_contract_order_is_reported() -> None:
    error = _refused_order(order_id="", quantity="-1")
    assert error.field == "order_id"
