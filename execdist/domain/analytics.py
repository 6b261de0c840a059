"""Analytics: executions, quantity, notional, VWAP, busts, corrections and distribution latency
per symbol, venue, account and subscription, over the last minute, the last hour and the
trading day. Pure: figures are added and merged exactly (decimals), and read over a window.

Definitions (the README's): ``executions``, ``quantity`` and ``notional`` count TRADE
confirmations (last_qty, last_qty x last_px); ``busts`` and ``corrections`` count BUST and
CORRECT confirmations (they do not change quantity or notional here); ``vwap`` is notional
over quantity, rounded like avg_px; latency runs from the execution's input timestamp to the
commit of its confirmation. A subscription's figures count the confirmations delivered to it.

Windows are kept in :data:`BUCKET_S`-second buckets: ``1m`` and ``1h`` are the buckets that
began within the last 60 and 3,600 seconds (so a window may reach up to one bucket further
back); ``1d`` is the trading day, from 00:00 UTC.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Final

from execdist.domain.delivery import LatencyHistogram, bucket_of
from execdist.domain.fills import product_exact, sum_exact, volume_weighted
from execdist.domain.model import Confirmation, ExecType, format_decimal
from execdist.domain.values import quick_init

BUCKET_S: Final = 10
ADD_DIRECTLY_UP_TO: Final = 4
"""Confirmations in a commit up to which each is added to the bucket and the day directly:
cheaper than summing them per key first, which pays for itself only on larger commits."""
DAY_S: Final = 86_400
_ZERO = Decimal(0)


class Dimension(StrEnum):
    SYMBOL = "symbol"
    VENUE = "venue"
    ACCOUNT = "account"
    SUBSCRIPTION = "subscription"


class Window(StrEnum):
    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"


WINDOW_SECONDS: Final = {Window.MINUTE: 60, Window.HOUR: 3600}


@quick_init
@dataclass(frozen=True, slots=True)
class Contribution:
    """What one confirmation adds to the figures of each key it counts under."""

    kind: ExecType
    quantity: Decimal
    notional: Decimal
    latency_ms: float
    latency_bucket: int

    @classmethod
    def of(cls, confirmation: Confirmation, latency_ms: float) -> Contribution:
        qty = confirmation.last_qty
        return cls(
            confirmation.exec_type,
            qty,
            product_exact(qty, confirmation.last_px),
            latency_ms,
            bucket_of(latency_ms),
        )


@dataclass
class Figures:
    executions: int = 0
    quantity: Decimal = _ZERO
    notional: Decimal = _ZERO
    busts: int = 0
    corrections: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, confirmation: Confirmation, latency_ms: float) -> None:
        self.take(Contribution.of(confirmation, latency_ms))

    def take(self, contribution: Contribution) -> None:
        """Count one confirmation, worked out once for all the keys it counts under."""
        _count(self, contribution)
        self.latency.observe_in(contribution.latency_bucket, contribution.latency_ms)

    def merge(self, other: Figures) -> None:
        self.executions += other.executions
        self.quantity = sum_exact(self.quantity, other.quantity)
        self.notional = sum_exact(self.notional, other.notional)
        self.busts += other.busts
        self.corrections += other.corrections
        self.latency.merge(other.latency)

    def take_out(self, other: Figures) -> None:
        """Undo :meth:`merge` of ``other`` (exactly: integers and decimals), but for the
        latency maximum, which stays for the caller to set."""
        self.executions -= other.executions
        self.quantity = sum_exact(self.quantity, -other.quantity)
        self.notional = sum_exact(self.notional, -other.notional)
        self.busts -= other.busts
        self.corrections -= other.corrections
        self.latency.take_out(other.latency)

    @classmethod
    def from_figures(cls, other: Figures) -> Figures:
        """A copy of ``other`` (its histogram not shared)."""
        copy = cls()
        copy.merge(other)
        return copy

    def to_dict(self) -> dict[str, object]:
        """The wire form between workers (exact decimals as text)."""
        return {
            "executions": self.executions,
            "quantity": format_decimal(self.quantity),
            "notional": format_decimal(self.notional),
            "busts": self.busts,
            "corrections": self.corrections,
            "latency": self.latency.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Figures:
        latency = data.get("latency")
        return cls(
            executions=int(str(data["executions"])),
            quantity=Decimal(str(data["quantity"])),
            notional=Decimal(str(data["notional"])),
            busts=int(str(data["busts"])),
            corrections=int(str(data["corrections"])),
            latency=LatencyHistogram.from_dict(latency if isinstance(latency, Mapping) else {}),
        )

    def item(self, key: str) -> dict[str, object]:
        """One item of the contract's answer."""
        vwap = volume_weighted(self.quantity, self.notional)
        percentiles = self.latency.percentiles()
        return {
            "key": key,
            "executions": self.executions,
            "quantity": format_decimal(self.quantity),
            "notional": format_decimal(self.notional),
            "vwap": None if vwap is None else format_decimal(vwap),
            "busts": self.busts,
            "corrections": self.corrections,
            "latency_ms": {"p50": percentiles["p50"], "p99": percentiles["p99"]},
        }


Keyed = dict[tuple[Dimension, str], Figures]


def _count(figures: Figures | _Sum, contribution: Contribution) -> None:
    """Add one confirmation's counts and sums (not its latency) to ``figures``."""
    kind = contribution.kind
    if kind is ExecType.TRADE:
        figures.executions += 1
        figures.quantity = sum_exact(figures.quantity, contribution.quantity)
        figures.notional = sum_exact(figures.notional, contribution.notional)
    elif kind is ExecType.BUST:
        figures.busts += 1
    else:
        figures.corrections += 1


class _Sum:
    """The contributions of one commit's confirmations that share a set of keys, added to the
    figures of each of those keys at once. Its latencies are kept sparse (bucket -> count): a
    set of keys holds a few confirmations when there are many sets (one per subscription),
    and adding a few buckets costs less than merging two whole histograms."""

    __slots__ = (
        "busts",
        "corrections",
        "executions",
        "latencies",
        "max_ms",
        "notional",
        "quantity",
    )

    def __init__(self) -> None:
        self.executions = 0
        self.quantity = _ZERO
        self.notional = _ZERO
        self.busts = 0
        self.corrections = 0
        self.latencies: dict[int, int] = {}
        self.max_ms = 0.0

    def take(self, contribution: Contribution) -> None:
        _count(self, contribution)
        bucket = contribution.latency_bucket
        self.latencies[bucket] = self.latencies.get(bucket, 0) + 1
        if contribution.latency_ms > self.max_ms:
            self.max_ms = contribution.latency_ms

    def add_to(self, figures: Figures) -> None:
        figures.executions += self.executions
        figures.quantity = sum_exact(figures.quantity, self.quantity)
        figures.notional = sum_exact(figures.notional, self.notional)
        figures.busts += self.busts
        figures.corrections += self.corrections
        latency = figures.latency
        counts = latency.counts
        for bucket, count in self.latencies.items():
            counts[bucket] += count
        if self.max_ms > latency.max_ms:
            latency.max_ms = self.max_ms


def bucket_of_time(at: float) -> int:
    """When the :data:`BUCKET_S`-second bucket holding time ``at`` begins (a day is a whole
    number of buckets, so two times in one bucket are in one day)."""
    return int(at) // BUCKET_S * BUCKET_S


def keys_of(
    symbol: str, venue: str, account: str, subscriptions: Iterable[str]
) -> tuple[tuple[Dimension, str], ...]:
    return (
        (Dimension.SYMBOL, symbol),
        (Dimension.VENUE, venue),
        (Dimension.ACCOUNT, account),
        *((Dimension.SUBSCRIPTION, subscription) for subscription in subscriptions),
    )


class WindowedFigures:
    """One worker's figures: :data:`BUCKET_S`-second buckets for the last hour and the day's
    totals."""

    def __init__(self) -> None:
        self._buckets: deque[tuple[int, Keyed]] = deque()
        self._day: tuple[int, Keyed] = (0, {})
        self._hour: dict[tuple[Dimension, str], _HourOfKey] = {}
        """Per key, the figures of the buckets that began after :attr:`_hour_after`: the
        last hour's, kept as buckets come and go, so the hour's window (an analyst's query)
        and its ranking (every 10 s, for Prometheus) are one pass over the keys, not a
        merge of every bucket of the hour (with 1,000 subscriptions, about a second of the
        event loop)."""
        self._hour_after = float("-inf")

    def add(
        self,
        at: float,
        confirmation: Confirmation,
        subscriptions: Iterable[str],
        latency_ms: float,
    ) -> None:
        self.add_all(at, [(confirmation, subscriptions, latency_ms)])

    def add_all(
        self,
        at: float,
        committed: Sequence[tuple[Confirmation, Iterable[str], float]],
    ) -> None:
        """Confirmations committed together at ``at``. Each confirmation's contribution is
        worked out once. A commit of a few confirmations adds them to the bucket and the day
        directly; a larger one is summed per set of keys first, then added to the bucket and
        the day once per key of each set (under load a commit holds hundreds of confirmations
        over a few sets of keys)."""
        if not committed:
            return
        start = bucket_of_time(at)
        if not self._buckets or self._buckets[-1][0] < start:
            self._buckets.append((start, {}))
        if self._buckets[-1][0] <= start:
            bucket_start, bucket = self._buckets[-1]
        else:
            bucket_start, bucket = self._find(start)
        day = int(at) // DAY_S * DAY_S
        if self._day[0] != day:
            self._day = (day, {})
        targets = (bucket, self._day[1])
        hour = self._hour if bucket_start > self._hour_after else None
        if len(committed) <= ADD_DIRECTLY_UP_TO:
            for confirmation, subscriptions, latency_ms in committed:
                contribution = Contribution.of(confirmation, latency_ms)
                keys = keys_of(
                    confirmation.symbol, confirmation.venue, confirmation.account, subscriptions
                )
                for key in keys:
                    for figures in targets:
                        entry = figures.get(key)
                        if entry is None:
                            entry = figures[key] = Figures()
                        entry.take(contribution)
                    if hour is not None:
                        of_key = _hour_of(hour, key)
                        of_key.figures.take(contribution)
                        of_key.maxima.add(bucket_start, contribution.latency_ms)
        else:
            # summed per symbol, venue, account and subscriptions first (under load most
            # confirmations share them), then added once per key of each set: the keys of a
            # set are built once, not once per confirmation
            by_set: dict[tuple[str, str, str, tuple[str, ...]], _Sum] = {}
            for confirmation, subscriptions, latency_ms in committed:
                of_set = (
                    confirmation.symbol,
                    confirmation.venue,
                    confirmation.account,
                    tuple(subscriptions),
                )
                summed = by_set.get(of_set)
                if summed is None:
                    summed = by_set[of_set] = _Sum()
                summed.take(Contribution.of(confirmation, latency_ms))
            for (symbol, venue, account, subscriptions), summed in by_set.items():
                for key in keys_of(symbol, venue, account, subscriptions):
                    for figures in targets:
                        total = figures.get(key)
                        if total is None:
                            total = figures[key] = Figures()
                        summed.add_to(total)
                    if hour is not None:
                        of_key = _hour_of(hour, key)
                        summed.add_to(of_key.figures)
                        of_key.maxima.add(bucket_start, summed.max_ms)
        self._prune(at)

    def window(self, by: Dimension, window: Window, now: float) -> dict[str, Figures]:
        """The figures per key of ``by`` over ``window`` as of ``now`` (for the hour, ``now``
        does not go back from one call to the next: what left the hour is gone)."""
        if window is Window.HOUR:
            self._leave_hour(now - WINDOW_SECONDS[Window.HOUR] - BUCKET_S)
            return {
                key: Figures.from_figures(of_key.figures)
                for (dimension, key), of_key in self._hour.items()
                if dimension is by
            }
        result: dict[str, Figures] = {}
        if window is Window.DAY:
            day, figures = self._day
            sources = [figures] if day == int(now) // DAY_S * DAY_S else []
        else:
            since = now - WINDOW_SECONDS[window] - BUCKET_S
            sources = [figures for start, figures in self._buckets if start > since]
        for figures in sources:
            for (dimension, key), entry in figures.items():
                if dimension is not by:
                    continue
                total = result.get(key)
                if total is None:
                    total = result[key] = Figures()
                total.merge(entry)
        return result

    def hour_ranking(self, by: Dimension, now: float) -> dict[str, tuple[int, Decimal]]:
        """Executions and notional per key of ``by`` over the hour as of ``now``: the
        figures :meth:`window` gives for :attr:`Window.HOUR`, without their latencies.
        ``now`` does not go back from one call to the next: what left the hour is gone."""
        self._leave_hour(now - WINDOW_SECONDS[Window.HOUR] - BUCKET_S)
        return {
            key: (of_key.figures.executions, of_key.figures.notional)
            for (dimension, key), of_key in self._hour.items()
            if dimension is by
        }

    def _find(self, start: int) -> tuple[int, Keyed]:
        """A bucket that is not the newest (a commit's clock went back a little)."""
        for bucket_start, figures in reversed(self._buckets):
            if bucket_start <= start:
                return bucket_start, figures
        self._buckets.appendleft((start, {}))
        return self._buckets[0]

    def _prune(self, now: float) -> None:
        oldest = now - WINDOW_SECONDS[Window.HOUR] - 2 * BUCKET_S
        while self._buckets and self._buckets[0][0] < oldest:
            self._leave_hour(self._buckets[0][0])
            self._buckets.popleft()

    def _leave_hour(self, through: float) -> None:
        """Take the buckets that began at or before ``through`` out of :attr:`_hour`."""
        if through <= self._hour_after:
            return
        for bucket_start, figures in self._buckets:
            if bucket_start > through:
                break
            if bucket_start <= self._hour_after:
                continue
            for key, entry in figures.items():
                of_key = self._hour[key]
                if of_key.leave(entry, through):
                    del self._hour[key]
        self._hour_after = through


class _HourOfKey:
    """A key's figures over the hour, kept as buckets come and go."""

    __slots__ = ("figures", "maxima")

    def __init__(self) -> None:
        self.figures = Figures()
        self.maxima = _SlidingMax()
        """The key's largest latency per bucket, so that the hour's maximum can fall when the
        bucket that held it leaves."""

    def leave(self, bucket: Figures, through: float) -> bool:
        """Take out ``bucket``'s figures of the key, one of the buckets that began at or
        before ``through``; True when the key has nothing left in the hour."""
        figures = self.figures
        figures.take_out(bucket)
        self.maxima.leave(through)
        figures.latency.max_ms = self.maxima.largest()
        return not (figures.executions or figures.busts or figures.corrections)


def _hour_of(
    hour: dict[tuple[Dimension, str], _HourOfKey], key: tuple[Dimension, str]
) -> _HourOfKey:
    of_key = hour.get(key)
    if of_key is None:
        of_key = hour[key] = _HourOfKey()
    return of_key


class _SlidingMax:
    """The largest value of the buckets still in a window: (bucket start, largest value)
    pairs, starts rising and values falling, as a sliding-window maximum keeps them: a value
    with a larger one in a later bucket can never be the window's largest again."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[tuple[int, float]] = deque()

    def add(self, start: int, value: float) -> None:
        entries = self._entries
        if entries and start < entries[-1][0]:
            self._add_earlier(start, value)
            return
        while entries and entries[-1][1] <= value:
            entries.pop()
        if not entries or entries[-1][0] != start:
            entries.append((start, value))

    def _add_earlier(self, start: int, value: float) -> None:
        """A value of a bucket before the newest (a commit's clock went back a little)."""
        largest: dict[int, float] = dict(self._entries)
        largest[start] = max(largest.get(start, value), value)
        kept: list[tuple[int, float]] = []
        for bucket_start in sorted(largest, reverse=True):
            if not kept or largest[bucket_start] > kept[-1][1]:
                kept.append((bucket_start, largest[bucket_start]))
        self._entries = deque(reversed(kept))

    def leave(self, through: float) -> None:
        """The buckets that began at or before ``through`` have left the window."""
        entries = self._entries
        while entries and entries[0][0] <= through:
            entries.popleft()

    def largest(self) -> float:
        return self._entries[0][1] if self._entries else 0.0


def merge_windows(answers: Iterable[Mapping[str, Figures]]) -> dict[str, Figures]:
    """The workers' figures of one window, key by key."""
    merged: dict[str, Figures] = {}
    for answer in answers:
        for key, figures in answer.items():
            total = merged.get(key)
            if total is None:
                total = merged[key] = Figures()
            total.merge(figures)
    return merged
