"""Everything the service remembers about one order_id, and its JSON form.

One :class:`OrderState` per order_id is the whole state of the join: the wiring keeps it in a
table keyed by order_id, hands it to the transitions in :mod:`execdist.domain.join`, and stores
``state.to_json()`` back (``state.to_dict()`` as JSON). The serialised form holds only JSON
types (str, int, list, dict, None; decimals as strings, times as ISO strings) so any JSON codec
can read it back.

``origin`` values of held executions are stored as they are, which is why they must be
JSON-compatible (str, int, finite float, bool, None, lists and str-keyed dicts of those), or a
:class:`RecordOrigin`, stored as ``{"topic": ..., "partition": ..., "offset": ..., "key":
<base64>, "value": <base64>}``: the wiring's origin, so that a rejected execution can still
be sent to the DLQ untouched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import InvalidOperation
from typing import cast

import orjson

from execdist.domain.errors import InvalidOrigin, InvalidState
from execdist.domain.fills import Fill, FillSummary, summarize_fills
from execdist.domain.model import (
    Confirmation,
    Execution,
    Order,
    OrderStatus,
    format_decimal,
    format_time,
    parse_stored_decimal,
    parse_stored_time,
)
from execdist.domain.values import quick_init

__all__ = [
    "STATE_FORMAT",
    "HeldExecution",
    "OrderState",
    "RecordOrigin",
    "SeenExecution",
    "SeqRange",
    "content_fingerprint",
    "order_view",
    "require_json_compatible",
]

STATE_FORMAT = 2
"""Version of the serialised form; bump it and teach ``from_dict`` the old one when it changes.

Format 1 carried every confirmation; format 2 counts them and keeps the last one's status (the
history is stored per confirmation, beside the state, so an update costs the same at the
thousandth fill as at the first)."""


def content_fingerprint(execution: Execution) -> str:
    """A digest of every field of an execution, for duplicate detection.

    Taken over the canonical JSON form, so equal values spelled differently (``"10"`` and
    ``10.00000000`` from Avro, or two offsets of the same instant) count as identical, and a
    short digest keeps the state small however many executions an order sees.
    """
    data = execution.to_dict()
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    if not canonical.isascii() or 127 in canonical:
        # the digest has always been over json.dumps' ASCII-escaped form, which orjson's
        # output equals only when there is nothing to escape: json.dumps also escapes DEL
        # (sought as the int 127: a one-byte bytes operand costs about 0.2 us more)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


@quick_init
@dataclass(frozen=True, slots=True)
class RecordOrigin:
    """Where an input record came from, with its original bytes: the wiring's ``origin`` of an
    execution. JSON-compatible by construction (:meth:`to_dict`), so it is taken in without a
    check, and its bytes are spelled in base64 only for an execution that is held (its state
    is stored) or refused (dead-lettered), not for the many applied at once."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def to_dict(self) -> dict[str, object]:
        """The JSON form, as a held execution's state stores it."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": None if self.key is None else base64.b64encode(self.key).decode(),
            "value": None if self.value is None else base64.b64encode(self.value).decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RecordOrigin:
        """Read back :meth:`to_dict` (a held execution's stored origin)."""
        key, value = data.get("key"), data.get("value")
        return cls(
            topic=str(data["topic"]),
            partition=int(str(data["partition"])),
            offset=int(str(data["offset"])),
            key=None if key is None else base64.b64decode(str(key)),
            value=None if value is None else base64.b64decode(str(value)),
        )


def require_json_compatible(value: object, path: str = "origin") -> None:
    """Raise :class:`InvalidOrigin` unless ``value`` survives a JSON round trip unchanged (a
    :class:`RecordOrigin` does: it is stored as its JSON form)."""
    if type(value) is RecordOrigin or _plainly_json(value):
        return  # the common case, checked without building the path of every item
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidOrigin(f"{path} is the non-finite float {value}, which JSON cannot hold")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            require_json_compatible(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidOrigin(f"{path} has the non-string key {key!r}")
            require_json_compatible(item, f"{path}[{key!r}]")
        return
    raise InvalidOrigin(
        f"{path} is a {type(value).__name__}; origins must be JSON-compatible "
        "(encode bytes as base64 text, for example)"
    )


def _plainly_json(value: object) -> bool:
    """True when ``value`` is built of exactly the JSON types (no subclasses, finite floats);
    False leaves the judgement, and the message, to :func:`require_json_compatible`."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return True
    if kind is dict:
        for key, item in cast(dict[object, object], value).items():
            if type(key) is not str or not _plainly_json(item):
                return False
        return True
    if kind is list:
        return all(_plainly_json(item) for item in cast(list[object], value))
    return kind is float and math.isfinite(cast(float, value))


@quick_init
@dataclass(frozen=True, slots=True)
class HeldExecution:
    """An execution waiting for its order or for an earlier seq."""

    execution: Execution
    origin: object
    """Opaque to the domain; returned in ``Rejected`` if the execution is later refused."""
    held_since: datetime


@quick_init
@dataclass(frozen=True, slots=True)
class SeenExecution:
    """What dedup needs to remember about an exec_id that was held, applied or refused."""

    fingerprint: str
    seq: int


@dataclass(frozen=True, slots=True)
class SeqRange:
    """Seqs ``first..last`` (inclusive) skipped when a gap timed out.

    Kept as ranges, not a set, because a single bogus seq far ahead would otherwise make the
    state hold millions of numbers.
    """

    first: int
    last: int

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self.first <= seq <= self.last

    def __len__(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class OrderState:
    """The join's memory for one order_id.

    Mutable on purpose: the transitions update it in place and return the same object, which
    avoids copying the confirmation history on every execution. Callers that need the old
    state must keep ``to_dict()`` of it.
    """

    order_id: str
    last_activity: datetime
    """Time of the last input or timeout that changed anything; drives expiry."""
    order: Order | None = None
    """Latest version of the order, ``None`` until it arrives."""
    next_seq: int = 1
    """The seq the next in-order execution must carry."""
    held: dict[int, HeldExecution] = field(default_factory=dict)
    """Executions waiting, by seq."""
    seen: dict[str, SeenExecution] = field(default_factory=dict)
    """Every exec_id held, applied or refused for a bad reference, for dedup."""
    skipped: list[SeqRange] = field(default_factory=list)
    """Seqs jumped over after a gap timeout; a late arrival for one is still applied."""
    live_fills: dict[str, Fill] = field(default_factory=dict)
    """Current (qty, px) of each live trade, keyed by the original TRADE's exec_id."""
    trade_of: dict[str, str] = field(default_factory=dict)
    """For each applied execution, the exec_id of the TRADE it created or acted on."""
    confirmation_count: int = 0
    """Confirmations emitted so far (they are kept by the caller, not in the state)."""
    last_confirmed_status: OrderStatus | None = None
    """``order_status`` of the latest confirmation, ``None`` before the first."""
    gap_since: datetime | None = None
    """When the current sequence gap was first seen; ``None`` when there is none."""
    duplicates_dropped: int = 0
    stale_orders_ignored: int = 0
    _order_json: tuple[Order, bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """``order`` and its JSON, encoded for :meth:`to_json` and reused while ``order`` is that
    very object (an order is immutable, so its JSON cannot change under it). Plain bytes, so
    that a state still copies and pickles."""

    @classmethod
    def new(cls, order_id: str, now: datetime) -> OrderState:
        """The state of an order_id nothing has been seen for yet."""
        return cls(order_id=order_id, last_activity=now)

    @property
    def last_seq(self) -> int:
        """The highest seq applied or skipped so far (0 before the first)."""
        return self.next_seq - 1

    def is_skipped(self, seq: int) -> bool:
        """True when ``seq`` was jumped over by a gap timeout and has not arrived since."""
        return any(seq in skipped for skipped in self.skipped)

    def fill_summary(self) -> FillSummary | None:
        """Current cum/leaves/avg/status, or ``None`` while the order has not arrived."""
        if self.order is None:
            return None
        return summarize_fills(self.order.quantity, self.live_fills)

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible form; :meth:`from_dict` restores an equal state from it."""
        return self._stored_form(None if self.order is None else self.order.to_dict())

    def to_json(self) -> bytes:
        """The stored form: :meth:`to_dict` as JSON, byte for byte ``orjson.dumps(to_dict())``.

        The wiring stores a state at every commit that touches its order, and the order itself
        changes only with a new version, so its part is encoded once per version."""
        order = self.order
        if order is None:
            return orjson.dumps(self._stored_form(None))
        encoded = self._order_json
        if encoded is None or encoded[0] is not order:
            encoded = self._order_json = (order, orjson.dumps(order.to_dict()))
        return orjson.dumps(self._stored_form(orjson.Fragment(encoded[1])))

    def _stored_form(self, order: object) -> dict[str, object]:
        """The form :meth:`to_dict` and :meth:`to_json` share, around ``order``'s (its dict,
        or its JSON already encoded)."""
        return {
            "format": STATE_FORMAT,
            "order_id": self.order_id,
            "last_activity": format_time(self.last_activity),
            "order": order,
            "next_seq": self.next_seq,
            # most states hold and skipped nothing: a comprehension over nothing still costs
            # a call, and a state is stored at every commit that touches its order
            "held": self._held_form() if self.held else [],
            "seen": {
                exec_id: {"fingerprint": seen.fingerprint, "seq": seen.seq}
                for exec_id, seen in self.seen.items()
            },
            "skipped": [[skipped.first, skipped.last] for skipped in self.skipped]
            if self.skipped
            else [],
            "live_fills": {
                trade_id: {"qty": format_decimal(fill.qty), "px": format_decimal(fill.px)}
                for trade_id, fill in self.live_fills.items()
            },
            "trade_of": dict(self.trade_of),
            "confirmation_count": self.confirmation_count,
            "last_confirmed_status": None
            if self.last_confirmed_status is None
            else self.last_confirmed_status._value_,
            "gap_since": None if self.gap_since is None else format_time(self.gap_since),
            "duplicates_dropped": self.duplicates_dropped,
            "stale_orders_ignored": self.stale_orders_ignored,
        }

    def _held_form(self) -> list[dict[str, object]]:
        return [
            {
                "execution": held.execution.to_dict(),
                "origin": (
                    held.origin.to_dict() if type(held.origin) is RecordOrigin else held.origin
                ),
                "held_since": format_time(held.held_since),
            }
            for _, held in sorted(self.held.items())
        ]

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> OrderState:
        """Restore a state written by :meth:`to_dict`; :class:`InvalidState` if it is not one."""
        try:
            return cls._decode(data)
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise InvalidState(f"stored order state cannot be read: {exc!r}") from exc

    @classmethod
    def _decode(cls, data: Mapping[str, object]) -> OrderState:
        if data.get("format") == 1:
            data = _from_format_1(data)
        elif data.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown state format {data.get('format')!r}")
        order = data["order"]
        gap_since = data["gap_since"]
        held = [_as_mapping(item) for item in _as_list(data["held"])]
        return cls(
            order_id=_as_str(data["order_id"]),
            last_activity=parse_stored_time(data["last_activity"]),
            order=None if order is None else Order.from_dict(_as_mapping(order)),
            next_seq=_as_int(data["next_seq"]),
            held={
                execution.seq: HeldExecution(
                    execution=execution,
                    origin=item["origin"],
                    held_since=parse_stored_time(item["held_since"]),
                )
                for item in held
                for execution in [Execution.from_dict(_as_mapping(item["execution"]))]
            },
            seen={
                _as_str(exec_id): SeenExecution(
                    fingerprint=_as_str(_as_mapping(seen)["fingerprint"]),
                    seq=_as_int(_as_mapping(seen)["seq"]),
                )
                for exec_id, seen in _as_mapping(data["seen"]).items()
            },
            skipped=[
                SeqRange(_as_int(bounds[0]), _as_int(bounds[1]))
                for bounds in map(_as_list, _as_list(data["skipped"]))
            ],
            live_fills={
                _as_str(trade_id): Fill(
                    qty=parse_stored_decimal(_as_mapping(fill)["qty"]),
                    px=parse_stored_decimal(_as_mapping(fill)["px"]),
                )
                for trade_id, fill in _as_mapping(data["live_fills"]).items()
            },
            trade_of={
                _as_str(exec_id): _as_str(trade_id)
                for exec_id, trade_id in _as_mapping(data["trade_of"]).items()
            },
            confirmation_count=_as_int(data["confirmation_count"]),
            last_confirmed_status=None
            if data["last_confirmed_status"] is None
            else OrderStatus(_as_str(data["last_confirmed_status"])),
            gap_since=None if gap_since is None else parse_stored_time(gap_since),
            duplicates_dropped=_as_int(data["duplicates_dropped"]),
            stale_orders_ignored=_as_int(data["stale_orders_ignored"]),
        )


def order_view(state: OrderState) -> dict[str, object]:
    """JSON-ready answer for ``GET /api/v1/orders/{order_id}``: the order and its fill state.

    Lives here so the web layer formats nothing itself and agrees with the confirmations.
    """
    summary = state.fill_summary()
    return {
        "order_id": state.order_id,
        "order": None if state.order is None else state.order.to_dict(),
        "cum_qty": None if summary is None else format_decimal(summary.cum_qty),
        "leaves_qty": None if summary is None else format_decimal(summary.leaves_qty),
        "avg_px": None if summary is None else format_decimal(summary.avg_px),
        "order_status": None if summary is None else summary.order_status.value,
        "last_seq": state.last_seq,
        "held_executions": [
            {**held.execution.to_dict(), "held_since": format_time(held.held_since)}
            for _, held in sorted(state.held.items())
        ],
        "gap_since": None if state.gap_since is None else format_time(state.gap_since),
        "skipped_seqs": [[skipped.first, skipped.last] for skipped in state.skipped],
        "confirmation_count": state.confirmation_count,
        "duplicates_dropped": state.duplicates_dropped,
        "stale_orders_ignored": state.stale_orders_ignored,
        "last_activity": format_time(state.last_activity),
    }


def _from_format_1(data: Mapping[str, object]) -> Mapping[str, object]:
    """A format-1 state in format 2: its embedded confirmations become a count and a status."""
    embedded = [
        Confirmation.from_dict(_as_mapping(item)) for item in _as_list(data["confirmations"])
    ]
    converted = {key: value for key, value in data.items() if key != "confirmations"}
    converted["confirmation_count"] = len(embedded)
    converted["last_confirmed_status"] = embedded[-1].order_status.value if embedded else None
    return converted


def _as_mapping(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _as_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _as_int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value
