"""Routes each confirmation to the topics of the subscriptions whose filters match it.

Runs inside the join's event. Each subscriber record goes to the
:class:`~execdist.agents.sequencing.SubscriberSequencer`, which numbers it (``sub_seq``) in the
same transaction as the confirmation itself when this worker numbers its subscription, or
routes it to the worker that does. Matching uses the
:class:`~execdist.domain.routing.SubscriptionIndex`, so its cost follows the number of matches,
not the number of subscriptions.

A subscription with ``fields`` gets a projection of the JSON record (only those keys, in the
contract's order), encoded once per distinct projection per confirmation. A subscription whose
``filter.expr`` fails on a confirmation does not get it; the failure is counted in
``execdist_filter_expression_errors_total`` and logged once per subscription version.
"""

from __future__ import annotations

import logging
import time

from execdist.agents.backfill import SubscriptionBackfill
from execdist.agents.subscriber_output import Encodings, SubscriberOutput
from execdist.domain.delivery import DeliveryStats
from execdist.domain.expressions import EvaluationError
from execdist.domain.model import Confirmation
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import OutputFormat, Subscription
from execdist.metrics import LabelledChildren, Metrics
from execdist.services.analytics import Analytics

log = logging.getLogger(__name__)


class SubscriptionRouter:
    """A confirmation sink of the join: fans each confirmation out to matching subscribers."""

    def __init__(
        self,
        index: SubscriptionIndex,
        output: SubscriberOutput,
        backfill: SubscriptionBackfill,
        stats: DeliveryStats,
        metrics: Metrics,
        analytics: Analytics,
    ) -> None:
        self._analytics = analytics
        self._index = index
        self._output = output
        self._backfill = backfill
        self._stats = stats
        self._expression_errors = LabelledChildren(metrics.expression_errors)
        self._failures_logged: set[tuple[str, int]] = set()
        # fetched once rather than per confirmation: the hot path of distribution
        self._latency = metrics.distribution_latency.labels()
        self._on_error = self._expression_failed

    async def __call__(
        self,
        partition: int,
        key: bytes,
        confirmation: Confirmation,
        body: dict[str, object],
        json_value: bytes,
        input_timestamp: float | None,
    ) -> None:
        latency_ms = (
            0.0 if input_timestamp is None else max(time.time() - input_timestamp, 0) * 1000
        )
        self._latency.observe(latency_ms / 1000)
        delivered: tuple[str, ...] = ()
        matches = self._index.match(confirmation, self._on_error)
        if matches:
            encodings = Encodings(json_value)
            ids: list[str] = []
            for subscription in matches:
                if subscription.backfill_from is not None and not self._backfill.admits(
                    partition, subscription, confirmation.order_id
                ):
                    continue  # its backfill has yet to reach this order, and will deliver this too
                if subscription.format is _JSON:
                    self._output.deliver_json(subscription, key, body, encodings)
                else:
                    await self._output.deliver(subscription, key, body, encodings)
                ids.append(subscription.id)
            delivered = tuple(ids)
        self._stats.record(input_timestamp, delivered)
        self._analytics.record(confirmation, delivered, input_timestamp)

    def _expression_failed(self, subscription: Subscription, error: EvaluationError) -> None:
        self._expression_errors[subscription.id].inc()
        key = (subscription.id, subscription.version)
        if key not in self._failures_logged:
            if len(self._failures_logged) > 10_000:  # bounded whatever the churn
                self._failures_logged.clear()
            self._failures_logged.add(key)
            log.warning(
                "subscription %s: filter.expr failed on a confirmation, which is not delivered "
                "to it (%s); further failures of this version are only counted",
                subscription.id,
                error,
            )


_JSON = OutputFormat.JSON
"""Looked up once: an enum member read from its class costs a descriptor call each time."""
