"""Queries across the book: which stored orders and positions a query selects, and how the
answers of several workers become one page.

The order-state and positions tables are partitioned like the inputs, so a query over the
whole book is asked of every partition's owner. Each owner answers for the partitions it holds
with a :class:`PartialPage`: the first ``limit`` matching items after the cursor, in key order,
and whether it had more. :func:`merge_pages` makes the page of the whole book from those
answers and names the partitions nobody answered for, so a short answer always says so.

Items are ordered by their key (order_id for orders, account for positions), and the cursor
is the last key of a page: a key is never listed twice across the pages of one query, even
while the book changes between pages. An order that changes between pages is listed as it is
when its page is read (an order already passed is not listed again; one that starts matching
after its page was read is not listed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import orjson

from execdist.domain.errors import DomainError, InvalidState
from execdist.domain.join import stored_state_expired
from execdist.domain.model import OrderStatus, parse_stored_time
from execdist.domain.order_state import OrderState, order_view
from execdist.domain.positions import position_view

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "OPEN_STATUSES",
    "BookQuery",
    "InvalidBookQuery",
    "Listing",
    "Page",
    "PartialPage",
    "decode_cursor",
    "encode_cursor",
    "merge_pages",
    "order_item",
    "parse_order_query",
    "parse_partitions",
    "parse_position_query",
    "position_item",
]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
MAX_PARAMETER_LENGTH: Final = 256
OPEN_STATUSES: Final = frozenset({OrderStatus.UNFILLED, OrderStatus.PARTIALLY_FILLED})
"""What ``status=open`` (the default) selects: orders that may still fill."""
_CURSOR_VERSION: Final = 1


class Listing(StrEnum):
    """What a book query lists: orders (by order_id) or accounts' positions (by account)."""

    ORDERS = "orders"
    POSITIONS = "positions"


class InvalidBookQuery(DomainError):
    """A query parameter is not one the book queries accept."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class BookQuery:
    """One query over the book (orders or positions) and the page asked for."""

    kind: Listing
    """A cursor of one listing is refused by the other."""
    account: str | None = None
    symbol: str | None = None
    statuses: frozenset[OrderStatus] = OPEN_STATUSES
    since: datetime | None = None
    """Only orders whose last activity (an input or a timeout that changed the order's state)
    is at or after this time."""
    limit: int = DEFAULT_LIMIT
    after: str | None = None
    """The key the previous page ended with (from the cursor)."""

    @property
    def fingerprint(self) -> str:
        """A digest of the filters (not the page): a cursor is good only for the query that
        gave it, since a page boundary of one filter means nothing to another."""
        parts = [
            self.kind,
            self.account or "",
            self.symbol or "",
            ",".join(sorted(self.statuses)),
            "" if self.since is None else self.since.isoformat(),
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]

    def to_params(self) -> dict[str, str]:
        """The query as request parameters, for asking another worker the same question."""
        params = {"limit": str(self.limit)}
        if self.account is not None:
            params["account"] = self.account
        if self.symbol is not None:
            params["symbol"] = self.symbol
        if self.kind is Listing.ORDERS:
            params["status"] = ",".join(sorted(self.statuses))
            if self.since is not None:
                params["since"] = self.since.isoformat()
        if self.after is not None:
            params["cursor"] = encode_cursor(self, self.after)
        return params


@dataclass(frozen=True)
class PartialPage:
    """One worker's answer for the partitions it holds."""

    items: list[tuple[str, dict[str, object]]]
    """(key, item), in key order, at most the query's limit."""
    more: bool
    """Whether more items than these match in those partitions."""
    partitions: frozenset[int]
    """The partitions the answer covers completely."""

    def to_dict(self) -> dict[str, object]:
        return {
            "items": [item for _, item in self.items],
            "keys": [key for key, _ in self.items],
            "more": self.more,
            "partitions": sorted(self.partitions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PartialPage:
        """Read another worker's answer; :class:`InvalidState` if it is not one."""
        items, keys, partitions = data.get("items"), data.get("keys"), data.get("partitions")
        if (
            not isinstance(items, list)
            or not isinstance(keys, list)
            or len(items) != len(keys)
            or not all(isinstance(key, str) for key in keys)
            or not all(isinstance(item, dict) for item in items)
            or not isinstance(partitions, list)
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in partitions)
            or not isinstance(data.get("more"), bool)
        ):
            raise InvalidState("a worker's answer to a book query is not one")
        return cls(list(zip(keys, items, strict=True)), bool(data["more"]), frozenset(partitions))


@dataclass(frozen=True)
class Page:
    """The answer to a book query: one page of the whole book, or of what answered."""

    items: list[dict[str, object]]
    next_cursor: str | None
    missing_partitions: list[int] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.missing_partitions)

    def to_dict(self) -> dict[str, object]:
        return {
            "items": self.items,
            "next_cursor": self.next_cursor,
            "partial": self.partial,
            "missing_partitions": self.missing_partitions,
        }


def merge_pages(
    query: BookQuery, answers: Iterable[PartialPage], partitions: Iterable[int]
) -> Page:
    """The page of the book made of the workers' answers for ``partitions`` (every partition
    of the book). A partition that two answers cover is taken from the first; one that none
    covers is missing, and the page says so.

    The page is exact for the partitions covered: each answer holds the first ``limit`` keys
    after the cursor of its partitions, so every key below the page's last one is in some
    answer; and the next page starts after the last key, so no key repeats.
    """
    covered: set[int] = set()
    items: list[tuple[str, dict[str, object]]] = []
    more = False
    for answer in answers:
        if answer.partitions & covered:
            # the gatherer asks each partition of one worker only, so this is a bug or a
            # stray answer; its items cannot be told apart per partition, so it is left out
            # (and whatever only it covered is reported missing)
            continue
        covered |= answer.partitions
        items.extend(answer.items)
        more = more or answer.more
    items.sort(key=lambda pair: pair[0])
    page = items[: query.limit]
    more = more or len(items) > query.limit
    next_cursor = encode_cursor(query, page[-1][0]) if more and page else None
    missing = sorted(set(partitions) - covered)
    return Page([item for _, item in page], next_cursor, missing)


# ---- selection ----------------------------------------------------------------------------


def order_item(
    query: BookQuery, stored: bytes, now: datetime, retention: timedelta
) -> dict[str, object] | None:
    """The public view of a stored order state (``GET /api/v1/orders/{order_id}``'s form) if
    the query selects it, else ``None``. An order_id with executions but no order yet is not
    listed (it has no account, symbol or status); an expired order waiting for the sweep that
    deletes it is not listed either."""
    data = orjson.loads(stored)
    order = data.get("order")
    if not isinstance(order, dict):
        return None
    if query.account is not None and order.get("account") != query.account:
        return None
    if query.symbol is not None and order.get("symbol") != query.symbol:
        return None
    if query.since is not None and parse_stored_time(data["last_activity"]) < query.since:
        return None
    if stored_state_expired(data, now, retention):
        return None
    state = OrderState.from_dict(data)
    summary = state.fill_summary()
    if summary is None or summary.order_status not in query.statuses:
        return None
    return order_view(state)


def position_item(query: BookQuery, account: str, stored: bytes) -> dict[str, object] | None:
    """An account's positions (``GET /api/v1/positions/{account}``'s form), only the query's
    symbol's when it names one; ``None`` when the account has no position in that symbol."""
    positions: dict[str, dict[str, str]] = orjson.loads(stored)
    if query.account is not None and account != query.account:
        return None
    if query.symbol is not None:
        if query.symbol not in positions:
            return None
        positions = {query.symbol: positions[query.symbol]}
    return position_view(account, positions)


# ---- parameters and cursors -----------------------------------------------------------------


def parse_order_query(params: Mapping[str, str]) -> BookQuery:
    """``GET /api/v1/orders``'s parameters; :class:`InvalidBookQuery` names the bad one."""
    query = BookQuery(
        kind=Listing.ORDERS,
        account=_text(params, "account"),
        symbol=_text(params, "symbol"),
        statuses=_statuses(params.get("status")),
        since=_since(params.get("since")),
        limit=_limit(params.get("limit")),
    )
    return _with_cursor(query, params.get("cursor"))


def parse_position_query(params: Mapping[str, str]) -> BookQuery:
    """``GET /api/v1/positions``'s parameters; :class:`InvalidBookQuery` names the bad one."""
    query = BookQuery(
        kind=Listing.POSITIONS,
        account=_text(params, "account"),
        symbol=_text(params, "symbol"),
        limit=_limit(params.get("limit")),
    )
    return _with_cursor(query, params.get("cursor"))


def encode_cursor(query: BookQuery, after: str) -> str:
    """An opaque cursor: the last key of a page, and the filters it belongs to."""
    raw = orjson.dumps({"v": _CURSOR_VERSION, "q": query.fingerprint, "after": after})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: BookQuery, cursor: str) -> str:
    """The key after which the page starts; :class:`InvalidBookQuery` for a cursor this API
    did not give, or gave for other filters."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        data = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        data = None
    if (
        not isinstance(data, dict)
        or data.get("v") != _CURSOR_VERSION
        or not isinstance(data.get("after"), str)
    ):
        raise InvalidBookQuery("cursor", "cursor is not one this API returned")
    if data.get("q") != query.fingerprint:
        raise InvalidBookQuery(
            "cursor", "cursor belongs to a query with other filters; keep the filters of its query"
        )
    return str(data["after"])


def _with_cursor(query: BookQuery, cursor: str | None) -> BookQuery:
    if not cursor:
        return query
    if len(cursor) > 4 * MAX_PARAMETER_LENGTH:
        raise InvalidBookQuery("cursor", "cursor is not one this API returned")
    return BookQuery(
        kind=query.kind,
        account=query.account,
        symbol=query.symbol,
        statuses=query.statuses,
        since=query.since,
        limit=query.limit,
        after=decode_cursor(query, cursor),
    )


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAMETER_LENGTH:
        raise InvalidBookQuery(name, f"{name} is longer than {MAX_PARAMETER_LENGTH} characters")
    return value


def _statuses(raw: str | None) -> frozenset[OrderStatus]:
    if raw is None or raw == "" or raw.lower() == "open":
        return OPEN_STATUSES
    if raw.lower() == "all":
        return frozenset(OrderStatus)
    names = [name.strip().upper() for name in raw.split(",")]
    allowed = {status.value for status in OrderStatus}
    if not names or any(name not in allowed for name in names):
        choices = ", ".join(status.value for status in OrderStatus)
        raise InvalidBookQuery(
            "status", f"status must be open, all, or a comma-separated list of {choices}"
        )
    return frozenset(OrderStatus(name) for name in names)


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    example = "2024-05-01T13:30:00Z"
    try:
        moment = datetime.fromisoformat(raw) if len(raw) <= 64 else None
    except ValueError:
        moment = None
    if moment is None:
        raise InvalidBookQuery("since", f"since must be an ISO-8601 time such as {example}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidBookQuery("since", f"since must name its zone (Z or +hh:mm), as in {example}")
    return moment


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidBookQuery("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_partitions(raw: str, partitions: int) -> frozenset[int]:
    """The ``partitions`` parameter of a worker-to-worker request: comma-separated numbers
    below ``partitions``."""
    chosen: set[int] = set()
    for part in raw.split(","):
        text = part.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) >= partitions:
            raise InvalidBookQuery(
                "partitions",
                f"partitions must be comma-separated partition numbers below {partitions}",
            )
        chosen.add(int(text))
    return frozenset(chosen)
