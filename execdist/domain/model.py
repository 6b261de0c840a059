"""The records of the external contract: orders, executions and confirmations.

These are plain, immutable values. They are built from untrusted input only through
``execdist.domain.validation``; the ``from_dict`` decoders here read back what ``to_dict``
wrote (our own state and output), so they check shape but not business rules.

JSON form, fixed here so that every output and every stored state agrees:

* decimals are strings in plain notation with no trailing fractional zeros ("187.45", "100",
  "0"), never exponent form. A value that arrived as Avro ``decimal(26,8)`` (``100.00000000``)
  and the same value sent as JSON ``"100"`` therefore produce the same bytes downstream;
* times are UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fractional digits);
* enums are their names (``to_dict`` reads a member's ``_value_``, the attribute its
  ``value`` property returns: the property costs about 0.1 us a read, several times per
  confirmation);
* keys come in the order the contract lists the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TypeVar

from execdist.domain.values import quick_init

__all__ = [
    "Anomaly",
    "AnomalyRule",
    "Confirmation",
    "ExecType",
    "Execution",
    "Order",
    "OrderStatus",
    "OrderType",
    "RejectReason",
    "Side",
    "StatusType",
    "format_decimal",
    "format_time",
    "parse_stored_decimal",
    "parse_stored_time",
    "remember_formatted_time",
    "status_event",
]

_T = TypeVar("_T")


class Side(StrEnum):
    """Direction of an order; SELL and SELL_SHORT both count as sold in positions."""

    BUY = "BUY"
    SELL = "SELL"
    SELL_SHORT = "SELL_SHORT"


class OrderType(StrEnum):
    """MARKET orders carry no limit price; LIMIT orders must carry one."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"


class ExecType(StrEnum):
    """What an execution does to the order's live fills."""

    TRADE = "TRADE"
    """A new fill, live under its own exec_id."""
    CORRECT = "CORRECT"
    """Replaces the quantity and price of the fill it refers to."""
    BUST = "BUST"
    """Cancels the fill it refers to."""


class OrderStatus(StrEnum):
    """Fill status of an order, derived from cum_qty against the order quantity."""

    UNFILLED = "UNFILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    OVERFILLED = "OVERFILLED"


class RejectReason(StrEnum):
    """The ``error.reason`` header of a DLQ record."""

    DECODE_ERROR = "DECODE_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    CONFLICTING_DUPLICATE = "CONFLICTING_DUPLICATE"
    ORPHAN_EXECUTION = "ORPHAN_EXECUTION"
    UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"


class StatusType(StrEnum):
    """The ``type`` of a StatusEvent on ``execdist.status``; the domain emits the last three."""

    SUBSCRIPTION_CREATED = "SUBSCRIPTION_CREATED"
    SUBSCRIPTION_UPDATED = "SUBSCRIPTION_UPDATED"
    SUBSCRIPTION_DELETED = "SUBSCRIPTION_DELETED"
    DISTRIBUTION_STATUS = "DISTRIBUTION_STATUS"
    PERFORMANCE = "PERFORMANCE"
    ERROR = "ERROR"
    HEALTH = "HEALTH"
    SEQUENCE_GAP = "SEQUENCE_GAP"
    OVERFILL = "OVERFILL"
    ANOMALY = "ANOMALY"


class AnomalyRule(StrEnum):
    """A rule of :mod:`execdist.domain.anomalies` that an execution broke."""

    PRICE_DEVIATION = "PRICE_DEVIATION"
    """last_px strays from the symbol's recent VWAP by more than the price band."""
    SIZE_OUTLIER = "SIZE_OUTLIER"
    """last_qty is more than the size factor times the account's recent average fill."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Why a confirmation is flagged: the rules its execution broke and the figures behind
    them, as text (``details`` keys are listed in :mod:`execdist.domain.anomalies`)."""

    rules: tuple[AnomalyRule, ...]
    details: Mapping[str, str]

    def to_dict(self) -> dict[str, object]:
        return {"rules": [rule.value for rule in self.rules], "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Anomaly:
        rules = data.get("rules")
        details = data.get("details")
        if not isinstance(rules, list) or not isinstance(details, Mapping):
            raise TypeError(
                f"anomaly: expected rules (a list) and details (an object), got {data!r}"
            )
        return cls(
            tuple(AnomalyRule(str(rule)) for rule in rules),
            {str(key): str(value) for key, value in details.items()},
        )


_FORMATTED_MAX = 8192


class _Spellings(dict[_T, str]):
    """Recent renderings of one formatter, by value: a hit is a plain subscript, a miss
    (``__missing__``) renders the value and keeps it. Prices, quantities and times repeat so
    much that most renderings are a hit, and a subscript costs about a third of a call to
    :func:`format_decimal` (the ``to_dict`` methods below index these directly, for values
    they hold that are finite and aware by construction). Emptied when it reaches
    ``_FORMATTED_MAX`` entries."""

    __slots__ = ()

    def remember(self, value: _T, text: str) -> None:
        if len(self) >= _FORMATTED_MAX:
            self.clear()
        self[value] = text


class _DecimalSpellings(_Spellings[Decimal]):
    """The :func:`format_decimal` cache. Equal decimals have one spelling whatever their
    scale, so the value (which hashes and compares by value) is the key."""

    __slots__ = ()

    def __missing__(self, value: Decimal) -> str:
        text = _spelled(value)
        self.remember(value, text)
        return text


class _FigureSpellings(_Spellings[str]):
    """The spellings of the figures the join works out anew for each confirmation (cum_qty,
    leaves_qty, avg_px), by their ``str``. Each is a new Decimal, whose hash is not kept yet,
    and hashing a Decimal takes a modular power of ten for its exponent: about a microsecond
    for avg_px's eight places, several times its ``str``. Decimals with the same ``str`` have
    the same digits and exponent, so the same spelling."""

    __slots__ = ()

    def __missing__(self, text: str) -> str:
        spelled = _spelled(Decimal(text))
        self.remember(text, spelled)
        return spelled


def _spelled(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot serialise the non-finite decimal {value}")
    if value.is_zero():
        return "0"  # also folds "-0" and "0E-8" into one spelling
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


_DECIMAL_TEXT = _DecimalSpellings()
_FIGURE_TEXT = _FigureSpellings()


def format_decimal(value: Decimal) -> str:
    """Render a decimal in canonical plain notation ("187.45", "100", "0").

    Canonical so that equal values always serialise identically whatever their scale, which
    makes duplicate detection and output comparison independent of the input encoding.
    """
    try:
        return _DECIMAL_TEXT[value]
    except TypeError:  # a signalling NaN cannot be hashed
        raise ValueError(f"cannot serialise the non-finite decimal {value}") from None


class _TimeSpellings(_Spellings[datetime]):
    """The :func:`format_time` cache: an execution's exec_time and the moment it was applied
    are each written several times (the confirmation, the order's state, the history).

    Aware datetimes hash and compare by instant across zones, so any offset of an instant
    finds the spelling of its UTC twin, and a naive datetime never equals an aware one, so it
    misses and is refused. Only UTC moments are kept: two datetimes of one other zone compare
    by their local fields, so the two instants of a repeated hour would share an entry."""

    __slots__ = ()

    def __missing__(self, moment: datetime) -> str:
        if moment.tzinfo is not UTC:
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError(
                    f"cannot serialise the naive datetime {moment!r}; times must be UTC"
                )
            return self[moment.astimezone(UTC)]
        # one %-format: about 40 % cheaper than isoformat(timespec=...) and trimming its
        # offset, and half the cost of the same f-string
        text = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
        )
        self.remember(moment, text)
        return text


_TIME_TEXT = _TimeSpellings()


def format_time(moment: datetime) -> str:
    """Render an aware datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.

    Built by hand rather than with ``isoformat`` so the microseconds are always present and
    the zone is always spelled 'Z', whatever the input's offset or precision.
    """
    return _TIME_TEXT[moment]


def remember_formatted_time(moment: datetime, text: str) -> None:
    """Note that :func:`format_time` renders ``moment`` (aware, UTC) as ``text``: for an input
    time that arrived spelled that way already, so that its first rendering is a lookup
    rather than a formatting. The caller vouches that ``text`` is exactly that rendering."""
    _TIME_TEXT.remember(moment, text)


def status_event(
    *,
    event_id: str,
    type_: StatusType,
    source: str,
    subscription_id: str | None,
    time: datetime,
    details: Mapping[str, object],
) -> dict[str, object]:
    """A StatusEvent of ``execdist.status`` in its JSON form, fields in the contract's order."""
    return {
        "event_id": event_id,
        "type": type_.value,
        "source": source,
        "subscription_id": subscription_id,
        "time": format_time(time),
        "details": dict(details),
    }


def parse_stored_decimal(value: object) -> Decimal:
    """Read back a decimal written by :func:`format_decimal`."""
    if not isinstance(value, str):
        raise TypeError(f"expected a decimal string, got {type(value).__name__}")
    try:
        parsed = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {value!r}") from exc
    if not parsed.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return parsed


def parse_stored_time(value: object) -> datetime:
    """Read back a time written by :func:`format_time`."""
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 time string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"stored time {value!r} has no timezone")
    return parsed.astimezone(UTC)


def _stored_str(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _stored_optional_str(data: Mapping[str, object], key: str) -> str | None:
    return None if data.get(key) is None else _stored_str(data, key)


def _stored_anomaly(value: object) -> Anomaly | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"anomaly: expected an object or null, got {type(value).__name__}")
    return Anomaly.from_dict(value)


def _stored_int(data: Mapping[str, object], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key}: expected an integer, got {type(value).__name__}")
    return value


@quick_init
@dataclass(frozen=True, slots=True)
class Order:
    """An order from the order management system, as of one version."""

    order_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    """Ordered quantity; > 0. An amendment (higher version) may change it."""
    order_type: OrderType
    limit_price: Decimal | None
    """> 0 for LIMIT orders, ``None`` for MARKET orders."""
    currency: str
    """ISO-4217 style three-letter code, upper case."""
    version: int
    """Starts at 1; a higher version replaces the held one, lower or equal is a replay."""
    event_time: datetime
    """Aware, UTC."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, keys in contract order."""
        return {
            "order_id": self.order_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side._value_,
            "quantity": _DECIMAL_TEXT[self.quantity],
            "order_type": self.order_type._value_,
            "limit_price": None if self.limit_price is None else _DECIMAL_TEXT[self.limit_price],
            "currency": self.currency,
            "version": self.version,
            "event_time": _TIME_TEXT[self.event_time],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Order:
        """Read back :meth:`to_dict` output (trusted; use ``parse_order`` for input)."""
        limit_price = data.get("limit_price")
        return cls(
            order_id=_stored_str(data, "order_id"),
            account=_stored_str(data, "account"),
            symbol=_stored_str(data, "symbol"),
            side=Side(_stored_str(data, "side")),
            quantity=parse_stored_decimal(data["quantity"]),
            order_type=OrderType(_stored_str(data, "order_type")),
            limit_price=None if limit_price is None else parse_stored_decimal(limit_price),
            currency=_stored_str(data, "currency"),
            version=_stored_int(data, "version"),
            event_time=parse_stored_time(data["event_time"]),
        )


@quick_init
@dataclass(frozen=True, slots=True)
class Execution:
    """One execution report for an order: a trade, a correction or a bust.

    Two executions are equal when every field is equal by value, so ``Decimal("10")`` equals
    ``Decimal("10.00")`` and the same instant in two offsets is the same time; this is the
    "identical content" used for duplicate detection.
    """

    exec_id: str
    order_id: str
    seq: int
    """1, 2, 3 … per order; the order in which executions must be applied."""
    exec_type: ExecType
    ref_exec_id: str | None
    """The execution a CORRECT or BUST refers to; ``None`` for a TRADE."""
    last_qty: Decimal
    """> 0 for TRADE and CORRECT, >= 0 for BUST (busts often repeat the busted quantity)."""
    last_px: Decimal
    venue: str
    exec_time: datetime

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, keys in contract order."""
        return {
            "exec_id": self.exec_id,
            "order_id": self.order_id,
            "seq": self.seq,
            "exec_type": self.exec_type._value_,
            "ref_exec_id": self.ref_exec_id,
            "last_qty": _DECIMAL_TEXT[self.last_qty],
            "last_px": _DECIMAL_TEXT[self.last_px],
            "venue": self.venue,
            "exec_time": _TIME_TEXT[self.exec_time],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Execution:
        """Read back :meth:`to_dict` output (trusted; use ``parse_execution`` for input)."""
        return cls(
            exec_id=_stored_str(data, "exec_id"),
            order_id=_stored_str(data, "order_id"),
            seq=_stored_int(data, "seq"),
            exec_type=ExecType(_stored_str(data, "exec_type")),
            ref_exec_id=_stored_optional_str(data, "ref_exec_id"),
            last_qty=parse_stored_decimal(data["last_qty"]),
            last_px=parse_stored_decimal(data["last_px"]),
            venue=_stored_str(data, "venue"),
            exec_time=parse_stored_time(data["exec_time"]),
        )


@quick_init
@dataclass(frozen=True, slots=True)
class Confirmation:
    """A trade confirmation: one applied execution joined with its order and fill state."""

    confirmation_id: str
    """Equal to exec_id, so consumers can deduplicate on it."""
    exec_id: str
    order_id: str
    account: str
    symbol: str
    side: Side
    venue: str
    exec_type: ExecType
    ref_exec_id: str | None
    seq: int
    last_qty: Decimal
    last_px: Decimal
    cum_qty: Decimal
    """Sum of the live fills' quantities after this execution."""
    leaves_qty: Decimal
    """max(order_qty - cum_qty, 0)."""
    avg_px: Decimal
    """Σ(qty * px) / cum_qty over live fills, 8 places half-even; 0 when cum_qty is 0."""
    order_qty: Decimal
    """The order quantity in force when this execution was applied."""
    order_status: OrderStatus
    exec_time: datetime
    confirmed_at: datetime
    """When the service applied the execution (the ``now`` passed in)."""
    anomaly: Anomaly | None = None
    """Set when the execution broke an anomaly rule (:mod:`execdist.domain.anomalies`)."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form, keys in contract order."""
        return {
            "confirmation_id": self.confirmation_id,
            "exec_id": self.exec_id,
            "order_id": self.order_id,
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side._value_,
            "venue": self.venue,
            "exec_type": self.exec_type._value_,
            "ref_exec_id": self.ref_exec_id,
            "seq": self.seq,
            "last_qty": _DECIMAL_TEXT[self.last_qty],
            "last_px": _DECIMAL_TEXT[self.last_px],
            "cum_qty": _FIGURE_TEXT[str(self.cum_qty)],
            "leaves_qty": _FIGURE_TEXT[str(self.leaves_qty)],
            "avg_px": _FIGURE_TEXT[str(self.avg_px)],
            "order_qty": _DECIMAL_TEXT[self.order_qty],
            "order_status": self.order_status._value_,
            "exec_time": _TIME_TEXT[self.exec_time],
            "confirmed_at": _TIME_TEXT[self.confirmed_at],
            "anomaly": None if self.anomaly is None else self.anomaly.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Confirmation:
        """Read back :meth:`to_dict` output (trusted)."""
        return cls(
            confirmation_id=_stored_str(data, "confirmation_id"),
            exec_id=_stored_str(data, "exec_id"),
            order_id=_stored_str(data, "order_id"),
            account=_stored_str(data, "account"),
            symbol=_stored_str(data, "symbol"),
            side=Side(_stored_str(data, "side")),
            venue=_stored_str(data, "venue"),
            exec_type=ExecType(_stored_str(data, "exec_type")),
            ref_exec_id=_stored_optional_str(data, "ref_exec_id"),
            seq=_stored_int(data, "seq"),
            last_qty=parse_stored_decimal(data["last_qty"]),
            last_px=parse_stored_decimal(data["last_px"]),
            cum_qty=parse_stored_decimal(data["cum_qty"]),
            leaves_qty=parse_stored_decimal(data["leaves_qty"]),
            avg_px=parse_stored_decimal(data["avg_px"]),
            order_qty=parse_stored_decimal(data["order_qty"]),
            order_status=OrderStatus(_stored_str(data, "order_status")),
            exec_time=parse_stored_time(data["exec_time"]),
            confirmed_at=parse_stored_time(data["confirmed_at"]),
            anomaly=_stored_anomaly(data.get("anomaly")),
        )
