"""Turn decoded input records into Orders and Executions, or say exactly why not.

Input reaches us in two shapes and both are accepted:

* decoded JSON: decimals as strings ("187.45") or integers, times as ISO-8601 strings;
* decoded Avro: ``Decimal`` objects and aware ``datetime`` objects already.

JSON numbers with a fraction arrive as ``float`` and are refused for quantities and prices:
by the time we see them they have been through binary floating point and may no longer be the
value the sender wrote. Unknown extra fields are ignored so producers can add fields first.

Every refusal is an :class:`~execdist.domain.errors.InvalidRecord` naming the field and saying
what is allowed; the wiring sends the original bytes to the DLQ as VALIDATION_ERROR.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TypeVar, cast

from execdist.domain.errors import InvalidRecord
from execdist.domain.model import (
    ExecType,
    Execution,
    Order,
    OrderType,
    Side,
    remember_formatted_time,
)

__all__ = [
    "MAX_FRACTION_DIGITS",
    "MAX_ID_LENGTH",
    "MAX_INTEGER_DIGITS",
    "execution_of_json_types",
    "order_of_json_types",
    "parse_execution",
    "parse_order",
]

MAX_ID_LENGTH = 128
"""Longest identifier (ids, account, symbol, venue) we accept; keeps keys and state bounded."""
MAX_INTEGER_DIGITS = 18
MAX_FRACTION_DIGITS = 8
"""Together these are the Avro type ``decimal(26,8)``: anything wider could not be re-encoded."""

# Plain or scientific notation with ASCII digits only: Decimal() itself would also take
# whitespace, underscores, other scripts' digits, "NaN" and "Infinity".
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PARSED: dict[str, Decimal] = {}
"""Decimal texts already accepted, with their canonical value: the bounds do not depend on the
field, and prices and quantities repeat, so most texts are checked once. Emptied when it
reaches ``_PARSED_MAX``."""
_PARSED_MAX = 8192
_E = TypeVar("_E", bound=StrEnum)
_MEMBERS: dict[type[StrEnum], dict[str, StrEnum]] = {}
"""Each enum's members by name, as a plain dict: ``name in Enum.__members__`` and
``Enum[name]`` go through Python-level code (about 0.8 us a field, against 0.05)."""


def parse_order(data: Mapping[str, object]) -> Order:
    """Validate a decoded order record and build an :class:`Order`.

    Raises :class:`InvalidRecord` for the first field that breaks a rule.
    """
    _require_mapping(data, "an order")
    order_id = _identifier(data, "order_id")
    account = _identifier(data, "account")
    symbol = _identifier(data, "symbol")
    side = _enum(data, "side", Side)
    quantity = _quantity(_decimal(data, "quantity"))
    order_type = _enum(data, "order_type", OrderType)
    limit_price = _limit_price(order_type, _optional_decimal(data, "limit_price"))
    currency = _check_currency("currency", _required(data, "currency"))
    version = _version(_integer(data, "version"))
    return Order(
        order_id=order_id,
        account=account,
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        currency=currency,
        version=version,
        event_time=_time(data, "event_time"),
    )


def order_of_json_types(
    order_id: str,
    account: str,
    symbol: str,
    side: Side,
    quantity: str | int,
    order_type: OrderType,
    limit_price: str | int | None,
    currency: str,
    version: int,
    event_time: str,
) -> Order:
    """:func:`parse_order` of a record whose fields all have the JSON types it accepts (read
    by :func:`execdist.codecs.input.read_typed_json`): the same rules in the same order, so
    the same :class:`Order`, or the same :class:`InvalidRecord`."""
    order_id = _check_identifier("order_id", order_id)
    account = _check_identifier("account", account)
    symbol = _check_identifier("symbol", symbol)
    quantity_value = _quantity(_check_decimal("quantity", quantity))
    limit = None if limit_price is None else _check_decimal("limit_price", limit_price)
    limit = _limit_price(order_type, limit)
    currency = _check_currency("currency", currency)
    return Order(
        order_id=order_id,
        account=account,
        symbol=symbol,
        side=side,
        quantity=quantity_value,
        order_type=order_type,
        limit_price=limit,
        currency=currency,
        version=_version(version),
        event_time=_time_of("event_time", event_time),
    )


def _quantity(quantity: Decimal) -> Decimal:
    _check_positive("quantity", quantity)
    return quantity


def _limit_price(order_type: OrderType, limit_price: Decimal | None) -> Decimal | None:
    if order_type is OrderType.LIMIT:
        if limit_price is None:
            raise InvalidRecord("limit_price", "limit_price is required for LIMIT orders")
        _check_positive("limit_price", limit_price)
    elif limit_price is not None:
        raise InvalidRecord(
            "limit_price",
            f"limit_price must be null for MARKET orders, got {_show(limit_price)}",
        )
    return limit_price


def _version(version: int) -> int:
    if version < 1:
        raise InvalidRecord("version", f"version must be 1 or greater, got {version}")
    return version


def parse_execution(data: Mapping[str, object]) -> Execution:
    """Validate a decoded execution record and build an :class:`Execution`.

    Raises :class:`InvalidRecord` for the first field that breaks a rule.
    """
    _require_mapping(data, "an execution")
    exec_id = _identifier(data, "exec_id")
    order_id = _identifier(data, "order_id")
    seq = _seq(_integer(data, "seq"))
    exec_type = _enum(data, "exec_type", ExecType)
    ref_exec_id = _reference(exec_type, exec_id, _optional_identifier(data, "ref_exec_id"))
    last_qty = _last_qty(exec_type, _decimal(data, "last_qty"))
    last_px = _last_px(_decimal(data, "last_px"))
    return Execution(
        exec_id=exec_id,
        order_id=order_id,
        seq=seq,
        exec_type=exec_type,
        ref_exec_id=ref_exec_id,
        last_qty=last_qty,
        last_px=last_px,
        venue=_identifier(data, "venue"),
        exec_time=_time(data, "exec_time"),
    )


def execution_of_json_types(
    exec_id: str,
    order_id: str,
    seq: int,
    exec_type: ExecType,
    ref_exec_id: str | None,
    last_qty: str | int,
    last_px: str | int,
    venue: str,
    exec_time: str,
) -> Execution:
    """:func:`parse_execution` of a record whose fields all have the JSON types it accepts
    (read by :func:`execdist.codecs.input.read_typed_json`): the same rules in the same order,
    so the same :class:`Execution`, or the same :class:`InvalidRecord`."""
    exec_id = _check_identifier("exec_id", exec_id)
    order_id = _check_identifier("order_id", order_id)
    seq = _seq(seq)
    if ref_exec_id is not None:
        ref_exec_id = _check_identifier("ref_exec_id", ref_exec_id)
    ref_exec_id = _reference(exec_type, exec_id, ref_exec_id)
    qty = _last_qty(exec_type, _check_decimal("last_qty", last_qty))
    px = _last_px(_check_decimal("last_px", last_px))
    # by position, in the fields' order (keywords cost about 40 ns each to match)
    return Execution(
        exec_id,
        order_id,
        seq,
        exec_type,
        ref_exec_id,
        qty,
        px,
        _check_identifier("venue", venue),
        _time_of("exec_time", exec_time),
    )


def _seq(seq: int) -> int:
    if seq < 1:
        raise InvalidRecord("seq", f"seq must be 1 or greater, got {seq}")
    return seq


def _reference(exec_type: ExecType, exec_id: str, ref_exec_id: str | None) -> str | None:
    if exec_type is ExecType.TRADE:
        if ref_exec_id is not None:
            raise InvalidRecord(
                "ref_exec_id", f"ref_exec_id must be null for a TRADE, got {ref_exec_id!r}"
            )
    else:
        if ref_exec_id is None:
            raise InvalidRecord(
                "ref_exec_id",
                f"ref_exec_id is required for a {exec_type.value}: "
                "the exec_id of the execution it corrects or busts",
            )
        if ref_exec_id == exec_id:
            raise InvalidRecord(
                "ref_exec_id", f"a {exec_type.value} cannot refer to itself ({exec_id!r})"
            )
    return ref_exec_id


def _last_qty(exec_type: ExecType, last_qty: Decimal) -> Decimal:
    if exec_type is ExecType.BUST:
        _check_not_negative("last_qty", last_qty)
    elif last_qty <= 0:  # the message only when it is needed: formatting it costs more
        _check_positive("last_qty", last_qty, f" for a {exec_type.value}")
    return last_qty


def _last_px(last_px: Decimal) -> Decimal:
    _check_not_negative("last_px", last_px)
    return last_px


def _require_mapping(data: object, what: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidRecord(None, f"{what} must be a JSON object, got {type(data).__name__}")


def _required(data: Mapping[str, object], name: str) -> object:
    if name not in data:
        raise InvalidRecord(name, f"{name} is required")
    value = data[name]
    if value is None:
        raise InvalidRecord(name, f"{name} is required and must not be null")
    return value


def _show(value: object) -> str:
    """A short, unambiguous rendering of a bad value for an error message."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _identifier(data: Mapping[str, object], name: str) -> str:
    return _check_identifier(name, _required(data, name))


def _optional_identifier(data: Mapping[str, object], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else _check_identifier(name, value)


def _check_identifier(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(name, f"{name} must be a string, got {_type_name(value)}")
    if not value.strip():
        raise InvalidRecord(name, f"{name} must not be empty or blank")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRecord(
            name, f"{name} must be at most {MAX_ID_LENGTH} characters, got {len(value)}"
        )
    return value


def _enum(data: Mapping[str, object], name: str, enum_type: type[_E]) -> _E:
    value = _required(data, name)
    members = _MEMBERS.get(enum_type)
    if members is None:
        members = _MEMBERS[enum_type] = dict(enum_type.__members__)
    if isinstance(value, str):
        member = members.get(value)
        if member is not None:
            return cast(_E, member)
    allowed = ", ".join(enum_type.__members__)
    raise InvalidRecord(name, f"{name} must be one of {allowed}, got {_show(value)}")


def _integer(data: Mapping[str, object], name: str) -> int:
    value = _required(data, name)
    # bool is an int subclass; true/false in a seq field is a producer bug, not 1/0.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord(name, f"{name} must be an integer, got {_type_name(value)}")
    return value


def _check_currency(name: str, value: object) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise InvalidRecord(
            name, f"{name} must be a three-letter upper-case code such as 'USD', got {_show(value)}"
        )
    return value


def _decimal(data: Mapping[str, object], name: str) -> Decimal:
    return _check_decimal(name, _required(data, name))


def _optional_decimal(data: Mapping[str, object], name: str) -> Decimal | None:
    value = data.get(name)
    return None if value is None else _check_decimal(name, value)


def _check_decimal(name: str, value: object) -> Decimal:
    # text first: most records carry it, and a known text then needs no other test (no value
    # is both text and a number, so the order changes no outcome)
    if isinstance(value, str):
        known = _PARSED.get(value)
        if known is not None:
            return known
        if not _DECIMAL_TEXT.fullmatch(value):
            raise InvalidRecord(
                name, f'{name} must be a finite decimal such as "187.45", got {_show(value)}'
            )
        try:
            number = Decimal(value)
        except InvalidOperation as exc:  # unreachable after the regex, kept as a safety net
            raise InvalidRecord(name, f"{name} is not a decimal: {_show(value)}") from exc
    elif isinstance(value, float):
        raise InvalidRecord(
            name,
            f'{name} must be a decimal string such as "187.45" or an integer, got the '
            f"JSON number {value!r}: numbers with a fraction are binary floats and inexact",
        )
    elif isinstance(value, bool):
        raise InvalidRecord(name, f"{name} must be a decimal, got a boolean")
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    else:
        raise InvalidRecord(
            name, f'{name} must be a decimal string such as "187.45", got {_type_name(value)}'
        )
    if not number.is_finite():
        raise InvalidRecord(name, f"{name} must be a finite number, got {number}")
    canonical = _canonical_within_bounds(name, number)
    if isinstance(value, str):
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[value] = canonical
    return canonical


def _canonical_within_bounds(name: str, number: Decimal) -> Decimal:
    """Check the decimal(26,8) bounds and return the value without trailing fractional zeros.

    Digits are counted on the value, not the spelling: "1.500000000" has one fractional digit.
    Returning a canonical form keeps exponents small so later arithmetic is cheap and exact.
    """
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by the caller
    if not any(digits):
        return Decimal(0)
    # Index arithmetic on the digit tuple rather than list edits: this runs for every price
    # not seen recently, and the tuple is only rebuilt when the value changes.
    end = len(digits)
    while exponent < 0 and digits[end - 1] == 0:
        end -= 1
        exponent += 1
    fraction_digits = max(0, -exponent)
    integer_digits = max(0, end + exponent)
    if integer_digits > MAX_INTEGER_DIGITS or fraction_digits > MAX_FRACTION_DIGITS:
        raise InvalidRecord(
            name,
            f"{name} must have at most {MAX_INTEGER_DIGITS} digits before the decimal point "
            f"and {MAX_FRACTION_DIGITS} after (Avro decimal(26,8)), got "
            f"{integer_digits} and {fraction_digits}",
        )
    if exponent > 0:  # 1E+2 -> 100, so the value prints and compares in plain notation
        return Decimal((sign, digits + (0,) * exponent, 0))
    if end < len(digits):
        return Decimal((sign, digits[:end], exponent))
    return number


def _check_positive(name: str, value: Decimal, context: str = "") -> None:
    if value <= 0:
        raise InvalidRecord(name, f"{name} must be greater than 0{context}, got {_show(value)}")


def _check_not_negative(name: str, value: Decimal) -> None:
    if value < 0:
        raise InvalidRecord(name, f"{name} must be 0 or greater, got {_show(value)}")


def _time(data: Mapping[str, object], name: str) -> datetime:
    return _time_of(name, _required(data, name))


def _time_of(name: str, value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidRecord(
                name,
                f"{name} must be an ISO-8601 time such as '2024-05-01T13:30:00.000000Z', "
                f"got {_show(value)}",
            ) from exc
    else:
        raise InvalidRecord(
            name, f"{name} must be an ISO-8601 time string, got {_type_name(value)}"
        )
    if moment.tzinfo is UTC:
        if isinstance(value, str) and _canonical_time_text(value):
            remember_formatted_time(moment, value)  # the outputs will spell it the same way
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRecord(
            name,
            f"{name} must include a timezone ('Z' or an offset such as '+00:00'), got "
            f"{_show(value if isinstance(value, str) else moment.isoformat())}",
        )
    return moment.astimezone(UTC)


def _canonical_time_text(text: str) -> bool:
    """Whether ``text``, which ``datetime.fromisoformat`` has read, is already spelled the way
    the outputs spell a time (``YYYY-MM-DDTHH:MM:SS.ffffffZ``): with every separator in its
    place, each field is exactly its zero-padded digits (fromisoformat takes ASCII digits
    only), as ``format_time`` writes them."""
    return (
        len(text) == 27
        and text[26] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
    )
