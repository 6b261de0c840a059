"""Routes each confirmation to the topics of the subscriptions whose filters match it.

Runs inside the join's event, so the subscriber records join the same transaction as the
confirmation itself: a subscriber sees a confirmation exactly when ``execdist.confirmations``
does. Matching uses the :class:`~execdist.domain.routing.SubscriptionIndex`, so its cost follows
the number of matches, not the number of subscriptions.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from schema_registry.client import AsyncSchemaRegistryClient

from execdist.codecs.output import AvroEncoder
from execdist.domain.delivery import DeliveryStats
from execdist.domain.model import Confirmation
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import OutputFormat
from execdist.metrics import LabelledChildren, Metrics
from execdist.runtime.transaction import RecordSink
from execdist.topics import TP


class SubscriptionRouter:
    """A confirmation sink of the join: fans each confirmation out to matching subscribers."""

    def __init__(
        self,
        index: SubscriptionIndex,
        out: RecordSink,
        registry: AsyncSchemaRegistryClient,
        stats: DeliveryStats,
        metrics: Metrics,
    ) -> None:
        self._index = index
        self._out = out
        self._avro = AvroEncoder(registry)
        self._stats = stats
        self._metrics = metrics
        self._delivered = LabelledChildren(metrics.delivered)

    async def __call__(
        self,
        source: TP,
        key: bytes,
        confirmation: Confirmation,
        body: dict[str, object],
        json_value: bytes,
        input_timestamp: float | None,
    ) -> None:
        now = datetime.now(UTC)
        latency_ms = (
            0.0 if input_timestamp is None else max(time.time() - input_timestamp, 0) * 1000
        )
        self._stats.record_confirmation(latency_ms)
        self._metrics.distribution_latency.observe(latency_ms / 1000)
        for subscription in self._index.match(confirmation):
            if subscription.format is OutputFormat.AVRO:
                subject = f"{subscription.topic}-value"
                schema_id = await self._avro.schema_id(subject, "confirmation")
                value = self._avro.encode_with_id(schema_id, "confirmation", body)
            else:
                value = json_value
            self._out.send(subscription.topic, key, value)
            self._stats.record(subscription.id, now, latency_ms)
            self._delivered(subscription.id).inc()
