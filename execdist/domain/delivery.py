"""Delivery figures per subscription: counts, last delivery and latency histograms.

Each worker keeps its own :class:`DeliveryStats`; the cluster view merges the workers'
snapshots. Histograms have fixed buckets so that merging is exact and cheap; percentiles are
reported as the upper bound of the bucket they fall in (conservative).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from execdist.domain.model import format_time, parse_stored_time

BUCKETS_MS: tuple[float, ...] = (
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
)
"""Upper bounds of the latency buckets in milliseconds; one more bucket holds the rest."""

PERCENTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}


def bucket_of(latency_ms: float) -> int:
    """The first bucket whose upper bound is >= the latency (the last one holds the rest)."""
    return bisect_left(BUCKETS_MS, latency_ms)


@dataclass
class LatencyHistogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    max_ms: float = 0.0

    def observe(self, latency_ms: float) -> None:
        self.observe_in(bucket_of(latency_ms), latency_ms)

    def observe_in(self, bucket: int, latency_ms: float) -> None:
        """:meth:`observe` with the bucket found already (:func:`bucket_of`), for a latency
        counted in several histograms."""
        self.counts[bucket] += 1
        if latency_ms > self.max_ms:
            self.max_ms = latency_ms

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max_ms = max(self.max_ms, other.max_ms)

    def take_out(self, other: LatencyHistogram) -> None:
        """Undo :meth:`merge` of ``other``'s counts; the maximum cannot be undone and stays
        for the caller to set."""
        self.counts = [a - b for a, b in zip(self.counts, other.counts, strict=True)]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentiles(self) -> dict[str, float | None]:
        total = self.total
        result: dict[str, float | None] = {}
        for name, quantile in PERCENTILES.items():
            if total == 0:
                result[name] = None
                continue
            rank = quantile * total
            running = 0
            value = self.max_ms
            for index, count in enumerate(self.counts):
                running += count
                if running >= rank and count:
                    value = BUCKETS_MS[index] if index < len(BUCKETS_MS) else self.max_ms
                    break
            result[name] = min(value, self.max_ms) if total else None
        result["max"] = self.max_ms if total else None
        return result

    def to_dict(self) -> dict[str, object]:
        return {"counts": list(self.counts), "max_ms": self.max_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LatencyHistogram:
        counts = [int(str(c)) for c in data.get("counts", [])]  # type: ignore[attr-defined]
        if len(counts) != len(BUCKETS_MS) + 1:
            counts = [0] * (len(BUCKETS_MS) + 1)
        return cls(counts=counts, max_ms=float(str(data.get("max_ms", 0.0))))


@dataclass
class SubscriptionDelivery:
    delivered: int = 0
    last_delivery: datetime | None = None
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    acknowledged: int | None = None
    """The highest ``sub_seq`` a WebSocket client acknowledged (``{"type": "ack"}``)."""
    webhook_error: str | None = None
    """The webhook's last error, ``None`` once a request succeeded after it."""
    webhook_at: datetime | None = None
    """When the webhook last succeeded or failed."""

    def to_dict(self) -> dict[str, object]:
        return {
            "delivered": self.delivered,
            "last_delivery": None
            if self.last_delivery is None
            else format_time(self.last_delivery),
            "latency": self.latency.to_dict(),
            "acknowledged": self.acknowledged,
            "webhook_error": self.webhook_error,
            "webhook_at": None if self.webhook_at is None else format_time(self.webhook_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SubscriptionDelivery:
        last = data.get("last_delivery")
        latency = data.get("latency")
        return cls(
            delivered=int(str(data.get("delivered", 0))),
            last_delivery=None if last is None else parse_stored_time(last),
            latency=LatencyHistogram.from_dict(latency if isinstance(latency, Mapping) else {}),
            acknowledged=None
            if data.get("acknowledged") is None
            else int(str(data.get("acknowledged"))),
            webhook_error=None if data.get("webhook_error") is None else str(data["webhook_error"]),
            webhook_at=None
            if data.get("webhook_at") is None
            else parse_stored_time(data["webhook_at"]),
        )

    def merge(self, other: SubscriptionDelivery) -> None:
        self.delivered += other.delivered
        if other.last_delivery is not None and (
            self.last_delivery is None or other.last_delivery > self.last_delivery
        ):
            self.last_delivery = other.last_delivery
        self.latency.merge(other.latency)
        if other.acknowledged is not None:
            self.acknowledged = max(self.acknowledged or 0, other.acknowledged)
        if other.webhook_at is not None and (
            self.webhook_at is None or other.webhook_at > self.webhook_at
        ):
            self.webhook_at, self.webhook_error = other.webhook_at, other.webhook_error


class DeliveryStats:
    """One worker's delivery figures, per subscription and in total.

    A delivery counts once its transaction committed, when a ``read_committed`` reader can
    see it: :meth:`record` keeps it with the transaction being built, and the engine's commit
    (a :class:`~execdist.runtime.commit.CommitFollower`) seals, applies or drops it. Its
    latency runs from the input record's timestamp to the commit.
    """

    def __init__(self) -> None:
        self.by_subscription: dict[str, SubscriptionDelivery] = {}
        self.overall = LatencyHistogram()
        self._open: list[tuple[float | None, tuple[str, ...]]] = []
        """(the input's timestamp, the subscriptions its confirmation went to) of each
        confirmation of the transaction being built."""
        self._sealed: list[tuple[float | None, tuple[str, ...]]] = []

    def record(self, input_timestamp: float | None, subscription_ids: tuple[str, ...]) -> None:
        """A confirmation, and a record of it for each of ``subscription_ids``, went into the
        open transaction."""
        self._open.append((input_timestamp, subscription_ids))

    def acknowledge(self, subscription_id: str, sub_seq: int) -> None:
        """A WebSocket client holds every record up to ``sub_seq``."""
        delivery = self._delivery(subscription_id)
        delivery.acknowledged = max(delivery.acknowledged or 0, sub_seq)

    def webhook_failed(self, subscription_id: str, error: str) -> None:
        delivery = self._delivery(subscription_id)
        delivery.webhook_error = error
        delivery.webhook_at = datetime.now(UTC)

    def webhook_succeeded(self, subscription_id: str) -> None:
        delivery = self._delivery(subscription_id)
        delivery.webhook_error = None
        delivery.webhook_at = datetime.now(UTC)

    def _delivery(self, subscription_id: str) -> SubscriptionDelivery:
        delivery = self.by_subscription.get(subscription_id)
        if delivery is None:
            delivery = self.by_subscription[subscription_id] = SubscriptionDelivery()
        return delivery

    def seal(self) -> None:
        self._sealed, self._open = self._open, []

    def aborted(self) -> None:
        self._open, self._sealed = [], []

    def committed(self, now: float | None = None) -> None:
        """The sealed transaction committed: count its deliveries, now."""
        sealed, self._sealed = self._sealed, []
        if not sealed:
            return
        moment = time.time() if now is None else now
        at = datetime.fromtimestamp(moment, UTC)
        by_subscription = self.by_subscription
        overall = self.overall
        for input_timestamp, subscription_ids in sealed:
            # one latency per confirmation, counted in the overall histogram and in that of
            # each subscription it went to
            latency_ms = 0.0 if input_timestamp is None else max(moment - input_timestamp, 0) * 1000
            bucket = bucket_of(latency_ms)
            overall.observe_in(bucket, latency_ms)
            for subscription_id in subscription_ids:
                delivery = by_subscription.get(subscription_id)
                if delivery is None:
                    delivery = by_subscription[subscription_id] = SubscriptionDelivery()
                delivery.delivered += 1
                delivery.last_delivery = at
                delivery.latency.observe_in(bucket, latency_ms)

    def snapshot(self) -> dict[str, object]:
        return {key: value.to_dict() for key, value in self.by_subscription.items()}
