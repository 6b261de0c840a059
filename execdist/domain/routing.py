"""Which subscriptions want a confirmation, at a cost that follows the matches, not the total.

:class:`SubscriptionIndex` answers ``match(confirmation)`` exactly as scanning every ACTIVE
subscription with :meth:`Filter.matches` would, but looks only at a few candidates.

How: every ACTIVE subscription is filed under one *anchor* dimension, the first one its filter
restricts in the order account, symbol, venue, exec_type, side (roughly from the most to the
least selective: thousands of accounts, thousands of symbols, tens of venues, three exec types,
three sides). It is filed once per value it lists there and nowhere else. A confirmation has
one value per dimension, so it looks up five buckets (plus the subscriptions that restrict no
dimension at all) and sees every candidate exactly once, without de-duplication. A candidate
is one whose anchor already matches; the other dimensions and ``min_qty`` are then checked
with a set lookup each.

Why this keeps the cost near the number of matches: a candidate anchored on a dimension is
wildcard on every dimension before it, so it can fail only on the less selective dimensions
after it (or on ``min_qty``). The common subscription (a few accounts, maybe more) is a
candidate only for its own accounts' confirmations. The suggested alternative, picking the
smallest of "postings + wildcards" per dimension at match time, degrades to a scan as soon
as many subscriptions leave accounts empty (symbol-only or venue-only subscribers), because
the wildcard set of every dimension then holds thousands of entries.

A filter's ``expr`` (CEL) is the last check of a candidate. Its top-level equality terms
(``symbol in ["AAPL", "MSFT"]``, ``account == "ACC-1"``, joined by ``&&``) count as
restrictions of their dimension, intersected with the filter's own lists, so an expression-only
subscription is still filed under its symbols or accounts and evaluated only for their
confirmations. An expression that cannot be evaluated on a record does not match it; ``match``
reports it to ``on_error`` so the caller can count it.

PAUSED subscriptions are kept (``get``, ``len``) but filed nowhere, so they cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter

from execdist.domain.expressions import EvaluationError, Expression
from execdist.domain.model import Confirmation
from execdist.domain.subscriptions import (
    Filter,
    OutputFormat,
    Subscription,
    SubscriptionStatus,
    topic_for,
)

__all__ = ["ErrorHandler", "FilterTrial", "SubscriptionIndex", "restrictions"]

ErrorHandler = Callable[[Subscription, EvaluationError], None]
"""Told about each subscription whose expression failed on a confirmation."""


class _Entry:
    """An ACTIVE subscription compiled for matching: the checks left after its anchor.

    A check is ``None`` when the dimension is unrestricted or is the anchor (the bucket it was
    found in already matched). ``plain`` is true when nothing is left to check, which is the
    common case and skips the checks altogether.
    """

    __slots__ = (
        "accounts",
        "anchor",
        "anchor_values",
        "exec_types",
        "expr",
        "id",
        "min_qty",
        "plain",
        "sides",
        "subscription",
        "symbols",
        "venues",
    )

    def __init__(
        self,
        subscription: Subscription,
        dimensions: tuple[frozenset[str] | None, ...],
        anchor: int | None,
    ) -> None:
        f = subscription.filter
        self.subscription = subscription
        self.id = subscription.id
        self.anchor = anchor
        anchored = None if anchor is None else dimensions[anchor]
        self.anchor_values: frozenset[str] = anchored or frozenset()
        checks = list(dimensions)
        if anchor is not None:
            checks[anchor] = None
        self.accounts, self.symbols, self.venues, self.exec_types, self.sides = checks
        self.min_qty: Decimal | None = f.min_qty
        self.expr: Expression | None = f.expr
        self.plain = (
            self.min_qty is None and self.expr is None and all(check is None for check in checks)
        )


_Bucket = dict[str, _Entry]
"""Subscription id -> entry: insertion-ordered, O(1) removal."""
_Postings = dict[str, _Bucket]
"""A dimension's value -> the subscriptions anchored on that value."""

_ANCHORS = ("accounts", "symbols", "venues", "exec_types", "sides")
"""Filter fields in anchor order; indexes into this tuple are the ``_Entry.anchor`` values."""
_by_id = attrgetter("id")
"""The id of a subscription or of an entry."""


def restrictions(f: Filter) -> tuple[frozenset[str] | None, ...]:
    """Per dimension in anchor order, the values a matching confirmation must have there
    (``None``: any): the filter's list, intersected with the expression's equality terms.
    An empty set means the filter can match nothing."""
    terms = f.expr.equality_terms if f.expr is not None else {}
    out: list[frozenset[str] | None] = []
    for name in _ANCHORS:
        listed: frozenset[str] = getattr(f, name)
        term = terms.get(name)
        if term is None:
            out.append(listed or None)
        elif listed:
            out.append(listed & term)
        else:
            out.append(term)
    return tuple(out)


class SubscriptionIndex:
    """All subscriptions known to a worker, indexed for :meth:`match`.

    Not thread-safe; one index per event loop. ``upsert`` replaces whatever was held under the
    same id: the caller feeds changes in the order they happened (a table's changelog does).
    """

    __slots__ = ("_by_id", "_entries", "_postings", "_unanchored")

    def __init__(self) -> None:
        self._by_id: dict[str, Subscription] = {}
        self._entries: dict[str, _Entry] = {}
        """ACTIVE subscriptions only."""
        self._postings: tuple[_Postings, ...] = tuple({} for _ in _ANCHORS)
        self._unanchored: _Bucket = {}
        """ACTIVE subscriptions whose filter restricts no dimension (min_qty aside)."""

    def __len__(self) -> int:
        """Subscriptions held, ACTIVE and PAUSED."""
        return len(self._by_id)

    def __contains__(self, subscription_id: object) -> bool:
        return subscription_id in self._by_id

    def __iter__(self) -> Iterator[Subscription]:
        """Every subscription held, in id order."""
        return iter(sorted(self._by_id.values(), key=_by_id))

    def get(self, subscription_id: str) -> Subscription | None:
        return self._by_id.get(subscription_id)

    def upsert(self, subscription: Subscription) -> None:
        """Add a subscription, or replace the one held under its id (filter, status, ...)."""
        self._unfile(subscription.id)
        self._by_id[subscription.id] = subscription
        if subscription.status is SubscriptionStatus.ACTIVE:
            self._file(subscription)

    def remove(self, subscription_id: str) -> Subscription | None:
        """Forget a subscription; returns it, or ``None`` if it was not held (idempotent)."""
        self._unfile(subscription_id)
        return self._by_id.pop(subscription_id, None)

    def match(
        self, confirmation: Confirmation, on_error: ErrorHandler | None = None
    ) -> list[Subscription]:
        """The ACTIVE subscriptions whose filter matches ``confirmation``, in id order.

        A subscription whose expression cannot be evaluated on ``confirmation`` is left out
        and passed to ``on_error``.
        """
        found: list[Subscription] = []
        accounts, symbols, venues, exec_types, sides = self._postings
        account = confirmation.account
        symbol = confirmation.symbol
        venue = confirmation.venue
        exec_type = confirmation.exec_type
        side = confirmation.side
        qty = confirmation.last_qty
        for bucket in (
            accounts.get(account),
            symbols.get(symbol),
            venues.get(venue),
            exec_types.get(exec_type),
            sides.get(side),
            self._unanchored,
        ):
            if not bucket:
                continue
            for entry in bucket.values():
                # Unrolled on purpose: this loop is the hot path of distribution.
                if entry.plain:
                    found.append(entry.subscription)
                    continue
                if entry.accounts is not None and account not in entry.accounts:
                    continue
                if entry.symbols is not None and symbol not in entry.symbols:
                    continue
                if entry.venues is not None and venue not in entry.venues:
                    continue
                if entry.exec_types is not None and exec_type not in entry.exec_types:
                    continue
                if entry.sides is not None and side not in entry.sides:
                    continue
                if entry.min_qty is not None and qty < entry.min_qty:
                    continue
                if entry.expr is not None:
                    try:
                        if not entry.expr.matches(confirmation):
                            continue
                    except EvaluationError as exc:
                        if on_error is not None:
                            on_error(entry.subscription, exc)
                        continue
                found.append(entry.subscription)
        if len(found) > 1:
            found.sort(key=_by_id)
        return found

    def _file(self, subscription: Subscription) -> None:
        dimensions = restrictions(subscription.filter)
        anchor = next((i for i, values in enumerate(dimensions) if values is not None), None)
        entry = _Entry(subscription, dimensions, anchor)
        self._entries[subscription.id] = entry
        if anchor is None:
            self._unanchored[subscription.id] = entry
            return
        # an empty anchor set (the expression contradicts the lists) files it nowhere: it can
        # match nothing
        postings = self._postings[anchor]
        for value in entry.anchor_values:
            postings.setdefault(value, {})[subscription.id] = entry

    def _unfile(self, subscription_id: str) -> None:
        entry = self._entries.pop(subscription_id, None)
        if entry is None:
            return
        if entry.anchor is None:
            del self._unanchored[subscription_id]
            return
        postings = self._postings[entry.anchor]
        for value in entry.anchor_values:
            bucket = postings[value]
            del bucket[subscription_id]
            if not bucket:  # keep memory bounded by what is subscribed now
                del postings[value]


class FilterTrial:
    """Counts what one filter matches among confirmations, for a dry-run.

    It matches with a :class:`SubscriptionIndex` holding the filter as its only subscription,
    so the answer is the router's own, expression errors included.
    """

    SAMPLE_SIZE = 20

    __slots__ = ("_index", "evaluation_errors", "matched", "sample", "scanned")

    def __init__(self, f: Filter) -> None:
        self._index = SubscriptionIndex()
        self._index.upsert(
            Subscription(
                id="dry-run",
                name="dry-run",
                filter=f,
                format=OutputFormat.JSON,
                status=SubscriptionStatus.ACTIVE,
                topic=topic_for("dry-run"),
                partitions=1,
                created_at=_EPOCH,
                updated_at=_EPOCH,
                token_hash="",
                version=1,
            )
        )
        self.scanned = 0
        self.matched = 0
        self.evaluation_errors = 0
        self.sample: list[dict[str, object]] = []
        """The first matches, as they were published."""

    def add(self, confirmation: Confirmation, published: dict[str, object]) -> None:
        """Count one confirmation; ``published`` is its JSON form, kept if it is sampled."""
        self.scanned += 1
        if self._index.match(confirmation, self._failed):
            self.matched += 1
            if len(self.sample) < self.SAMPLE_SIZE:
                self.sample.append(published)

    def _failed(self, _subscription: Subscription, _error: EvaluationError) -> None:
        self.evaluation_errors += 1


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
