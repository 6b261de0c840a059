"""Filter expressions: CEL parsing and checking, exact decimal evaluation, errors, index terms."""

from __future__ import annotations

import dataclasses
from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from execdist.domain import Confirmation, ExecType, Side
from execdist.domain.expressions import (
    MAX_EXPRESSION_LENGTH,
    EvaluationError,
    InvalidExpression,
    compile_expression,
)
from execdist.domain.model import Anomaly, AnomalyRule, format_decimal
from tests.unit.domain.test_subscriptions import make_confirmation


def confirmation(**changes: object) -> Confirmation:
    return dataclasses.replace(make_confirmation(), **changes)  # type: ignore[arg-type]


def matches(source: str, record: Confirmation | None = None) -> bool:
    return compile_expression(source).matches(record or confirmation())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 10000', True),  # 100 x 187.45
        ('symbol in ["AAPL", "MSFT"] && last_qty * last_px >= 1000000', False),
        ('symbol in ["MSFT"] || venue == "XNAS"', True),
        ('side == "BUY" && exec_type == "TRADE" && order_status == "FILLED"', True),
        ('side != "BUY"', False),
        ("last_qty == 100", True),
        ("last_qty == 100.0", True),
        ("last_px == 187.45", True),
        ("last_px > 187.449999999 && last_px < 187.450000001", True),
        ("avg_px - last_px == 0", True),
        ("seq == 1 && seq % 2 == 1 && seq / 2 == 0", True),
        ("-last_qty < 0", True),
        ("ref_exec_id == null", True),
        ('exec_time >= "2024-05-01T13:30:00" && exec_time < "2024-05-02"', True),
        ('size(symbol) == 4 && symbol.startsWith("AA") && symbol.endsWith("PL")', True),
        ('account.contains("CC")', True),
        ('string(last_px) == "187.45" && int(last_qty) == 100', True),
        ('last_qty > 50 ? venue == "XNAS" : false', True),
        ("!(last_qty < 100)", True),
        ("[1, 2, 3][seq] == 2", True),
        ('symbol in [] || "x" + "y" == "xy"', True),
        ("last_qty in [99, 100.0]", True),
        ("0.1 + 0.2 == 0.3", True),
    ],
)
def test_evaluates_as_cel_with_exact_numbers(source: str, expected: bool) -> None:
    assert matches(source) is expected


def test_decimal_arithmetic_is_exact_where_binary_floats_are_not() -> None:
    record = confirmation(last_qty=Decimal(3), last_px=Decimal("0.1"))
    assert matches("last_qty * last_px == 0.3", record)  # 0.30000000000000004 in doubles
    assert matches("last_px + 0.2 == 0.3", record)
    assert not matches("last_qty * last_px > 0.3", record)
    assert not matches("last_px == 0.10000000000000001", record)  # the literal as written


def test_long_literals_are_read_from_the_text_not_through_a_double() -> None:
    record = confirmation(last_qty=Decimal("123456789012345678.12345678"))
    assert matches('symbol == "é€𝄞" || last_qty == 123456789012345678.12345678', record)
    assert not matches("last_qty == 123456789012345678.12345679", record)


def test_the_largest_product_of_two_decimals_is_exact() -> None:
    big = Decimal("999999999999999999.99999999")
    record = confirmation(last_qty=big, last_px=big)
    scaled = int(big.scaleb(8))
    product = format_decimal(Decimal(scaled * scaled).scaleb(-16, Context(prec=100)))
    assert len(product) == 53  # 52 digits and the point
    assert matches(f"last_qty * last_px == {product}", record)
    assert not matches(f"last_qty * last_px > {product}", record)


@pytest.mark.parametrize(
    "source",
    [
        "seq * 9223372036854775807 * 2 > 0",  # int64 overflow
        "seq + 9223372036854775807 > 0",
        "seq / 0 == 1",
        "last_qty / 0 > 1",
        "last_qty * last_qty * last_qty * last_qty * last_qty > 0",  # beyond 60 digits
        "ref_exec_id.startsWith('EX')",  # null
        "[1][seq + 5] == 1",
    ],
)
def test_a_failure_on_a_record_is_an_evaluation_error_not_a_wrong_answer(source: str) -> None:
    record = confirmation(last_qty=Decimal("999999999999999999.99999999"))
    with pytest.raises(EvaluationError):
        compile_expression(source).matches(record)


FLAGGED = Anomaly((AnomalyRule.PRICE_DEVIATION, AnomalyRule.SIZE_OUTLIER), {"size_ratio": "12"})


@pytest.mark.parametrize(
    ("source", "plain", "flagged"),
    [
        ("anomaly != null", False, True),
        ("anomaly == null", True, False),
        ('anomaly != null && anomaly.contains("SIZE_OUTLIER")', False, True),
        ('anomaly == "PRICE_DEVIATION,SIZE_OUTLIER"', False, True),
        ('anomaly != null && symbol == "MSFT"', False, False),
    ],
)
def test_anomaly_is_null_or_its_rules(source: str, plain: bool, flagged: bool) -> None:
    assert matches(source) is plain
    assert matches(source, confirmation(anomaly=FLAGGED)) is flagged


def test_and_or_absorb_an_error_when_the_other_side_decides() -> None:
    assert matches("seq / 0 == 1 || true")
    assert matches("true || seq / 0 == 1")
    assert not matches("seq / 0 == 1 && false")
    assert not matches("false && seq / 0 == 1")
    with pytest.raises(EvaluationError):
        matches("seq / 0 == 1 && true")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("symbol >", "Syntax error"),
        ("nope == 1", "undeclared reference to 'nope'"),
        ("symbol + 1", "no matching overload"),
        ('last_qty > "10"', "compares a number with string"),
        ('last_qty + "x" == "y"', "not defined"),
        ("symbol", "must be a boolean expression"),
        ("last_qty % 2 == 0", "'%' needs int"),
        ("[1, 2].exists(x, x > 1)", "not supported"),
        ('symbol.matches("A.*")', "'matches' is not supported"),
        ('{"a": 1}["a"] == 1', "not supported"),
        ('timestamp("2024-01-01T00:00:00Z") < timestamp("2025-01-01T00:00:00Z")', "not supported"),
        ("   ", "must not be empty"),
        ("(" * 100 + "true" + ")" * 100, "recursion"),
        ("seq + " * 100 + "1 > 0", "recursion"),
        ("true || " * 600 + "true", f"at most {MAX_EXPRESSION_LENGTH} characters"),
    ],
)
def test_invalid_expressions_are_refused_with_a_reason(source: str, fragment: str) -> None:
    with pytest.raises(InvalidExpression) as caught:
        compile_expression(source)
    assert fragment in caught.value.message


def test_compiled_once_per_text() -> None:
    assert compile_expression("seq > 1") is compile_expression("seq > 1")
    assert compile_expression("seq > 1") == compile_expression("seq > 1")
    assert compile_expression("seq > 1") != compile_expression("seq > 2")


@pytest.mark.parametrize(
    ("source", "terms"),
    [
        ('symbol in ["AAPL", "MSFT"] && last_qty > 5', {"symbols": {"AAPL", "MSFT"}}),
        ('"ACC-1" == account', {"accounts": {"ACC-1"}}),
        (
            'venue == "XNAS" && (side == "BUY" && exec_type in ["TRADE", "NOPE"])',
            {"venues": {"XNAS"}, "sides": {"BUY"}, "exec_types": {"TRADE"}},
        ),
        ('symbol in ["A", "B"] && symbol == "B"', {"symbols": {"B"}}),
        ('symbol == "A" || venue == "X"', {}),
        ('!(symbol == "A")', {}),
        ('order_id == "O-1"', {}),
    ],
)
def test_equality_terms_for_the_index(source: str, terms: dict[str, set[str]]) -> None:
    assert dict(compile_expression(source).equality_terms) == terms


decimals = st.decimals(
    min_value=Decimal("-999999999999999999.99999999"),
    max_value=Decimal("999999999999999999.99999999"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)


@given(qty=decimals, px=decimals, bound=decimals)
def test_notional_comparisons_agree_with_exact_integer_arithmetic(
    qty: Decimal, px: Decimal, bound: Decimal
) -> None:
    record = confirmation(last_qty=qty, last_px=px)
    expression = compile_expression(f"last_qty * last_px >= {_literal(bound)}")
    assert expression.matches(record) is _exact_ge(qty, px, bound)


@given(qty=decimals, px=decimals)
def test_sums_are_exact(qty: Decimal, px: Decimal) -> None:
    record = confirmation(last_qty=qty, last_px=px)
    total = qty + px  # at most 27 digits: exact in Python's default 28-digit context
    assert compile_expression(f"last_qty + last_px == {_literal(total)}").matches(record)
    assert compile_expression(f"last_qty - {_literal(total)} == -last_px").matches(record)


def _exact_ge(qty: Decimal, px: Decimal, bound: Decimal) -> bool:
    # integers scaled by 10^16: a reference no decimal context can round
    product = int(qty.scaleb(8)) * int(px.scaleb(8))
    return product >= int(bound.scaleb(16))


def _literal(value: Decimal) -> str:
    text = format_decimal(value)
    return text if "." in text else text + ".0"


@given(
    side=st.sampled_from(list(Side)),
    exec_type=st.sampled_from(list(ExecType)),
    wanted=st.sets(st.sampled_from([*Side.__members__, "OTHER"]), max_size=3),
)
def test_list_membership_agrees_with_python(
    side: Side, exec_type: ExecType, wanted: set[str]
) -> None:
    values = ", ".join(f'"{value}"' for value in sorted(wanted))
    record = confirmation(side=side, exec_type=exec_type)
    assert matches(f"side in [{values}]", record) is (side.value in wanted)
