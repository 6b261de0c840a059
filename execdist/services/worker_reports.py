"""Each worker's report, shared with every worker, and the periodic status events.

Every second a worker writes its report (partitions, lag, confirmation counts, delivery figures
per subscription) to ``execdist-internal.workers``, keyed by worker id and incarnation, and
reads everyone's reports back: any worker can then answer the cluster-wide status queries.
Every ``status_interval`` it also publishes HEALTH, PERFORMANCE and DISTRIBUTION_STATUS events
on ``execdist.status``. Delivery figures count records handed to the transactional producer;
a record whose transaction is aborted by a crash is counted once too often.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import KafkaError, Message, Producer
from mode import Service

from execdist import topics
from execdist.codecs.output import encode_json
from execdist.domain.delivery import DeliveryStats, LatencyHistogram, SubscriptionDelivery
from execdist.domain.model import StatusType, format_time, parse_stored_time, status_event
from execdist.infra import clients
from execdist.metrics import Metrics
from execdist.services.follower import follow_from_start
from execdist.settings import Settings

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
STOP_FLUSH_S = 5.0
"""How long a stopping worker waits for its last report to be delivered."""
YIELD_EVERY = 64
"""Status events queued between two yields to the event loop."""
STALE_AFTER = timedelta(seconds=10)
"""A worker whose last report is older than this is no longer listed as live."""


class WorkerProgress(Protocol):
    """What a worker's report says of its engine (:class:`~execdist.runtime.engine.Engine`)."""

    @property
    def partitions(self) -> list[int]:
        """The input partitions this worker owns."""

    def lag(self) -> int:
        """Input records not yet committed, over those partitions."""


class WorkerReports(Service):
    """Publishes this worker's report and status events; keeps everyone's latest report."""

    def __init__(
        self,
        settings: Settings,
        stats: DeliveryStats,
        progress: WorkerProgress,
        metrics: Metrics,
        *,
        status_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._stats = stats
        self._progress = progress
        self._metrics = metrics
        self._status_interval = status_interval
        self.incarnation = uuid.uuid4().hex[:8]
        self.reports: dict[str, dict[str, object]] = {}
        self._producer: Producer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tp = TopicPartition(topics.WORKERS, 0)
        self._last_total = 0
        self._last_time = time.monotonic()
        self.rate_per_s = 0.0
        self._last_delivered: dict[str, int] = {}
        self._event_seq = 0

    @property
    def key(self) -> str:
        return f"{self._settings.worker_id}/{self.incarnation}"

    async def on_start(self) -> None:
        self._producer = clients.status_producer(self._settings)
        self._consumer, self._tp = await follow_from_start(
            self._settings, topics.WORKERS, read_committed=False
        )
        self.add_future(self._follow())
        self.add_future(self._report_loop())
        self.add_future(self._status_loop())

    async def on_stop(self) -> None:
        producer = self._producer
        if producer is not None:
            try:
                await self._publish_report(stopped=True)
            finally:
                # the last report says this worker stopped: nothing may follow it (the loops
                # may still run a turn), and it is waited for (a little)
                self._producer = None
                await asyncio.to_thread(producer.flush, STOP_FLUSH_S)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while not self.should_stop:
            batch = await self._consumer.getmany(self._tp, timeout_ms=500)
            for record in batch.get(self._tp, []):
                if record.key is None:
                    continue
                key = record.key.decode()
                if record.value is None:
                    self.reports.pop(key, None)
                else:
                    self.reports[key] = orjson.loads(record.value)

    async def _report_loop(self) -> None:
        while not self.should_stop:
            await self.sleep(REPORT_INTERVAL_S)
            try:
                await self._publish_report()
            except Exception as exc:  # noqa: BLE001 - a report can wait; the worker must not stop
                log.warning("could not publish worker report: %r", exc)

    def _confirmations_total(self) -> int:
        return int(
            sum(
                sample.value
                for metric in self._metrics.confirmations.collect()
                for sample in metric.samples
                if sample.name.endswith("_total")
            )
        )

    def current_report(self, stopped: bool = False) -> dict[str, object]:
        total = self._confirmations_total()
        now = time.monotonic()
        elapsed = max(now - self._last_time, 1e-6)
        self.rate_per_s = max(total - self._last_total, 0) / elapsed
        self._last_total, self._last_time = total, now
        rates = {}
        for subscription_id, delivery in self._stats.by_subscription.items():
            before = self._last_delivered.get(subscription_id, 0)
            rates[subscription_id] = round(max(delivery.delivered - before, 0) / elapsed, 3)
            self._last_delivered[subscription_id] = delivery.delivered
        return {
            "partitions": self._progress.partitions,
            "lag": self._progress.lag(),
            "confirmations_total": total,
            "worker_id": self._settings.worker_id,
            "incarnation": self.incarnation,
            "url": self._settings.canonical_url,
            "time": format_time(datetime.now(UTC)),
            "stopped": stopped,
            "rate_per_s": round(self.rate_per_s, 3),
            "latency": self._stats.overall.to_dict(),
            "delivery": self._stats.snapshot(),
            "delivery_rates": rates,
        }

    async def _publish_report(self, stopped: bool = False) -> None:
        report = self.current_report(stopped)
        self.reports[self.key] = report
        self._produce(topics.WORKERS, orjson.dumps(report), self.key.encode())

    def _produce(self, topic: str, value: bytes, key: bytes) -> None:
        """Queue a record (librdkafka sends it from its own threads) and serve the delivery
        reports of those sent before; a record not delivered is logged, not retried: the next
        report or status event supersedes it."""
        producer = self._producer
        if producer is None:
            return  # not started, or stopping: the last report is written already
        producer.produce(topic, value, key, on_delivery=_log_failed_delivery)
        producer.poll(0)

    # ---- status events ------------------------------------------------------------------

    async def publish_status(
        self,
        type_: StatusType,
        details: Mapping[str, object],
        subscription_id: str | None = None,
    ) -> None:
        """A status event from this worker, outside any transaction: it observes (HEALTH,
        PERFORMANCE, DISTRIBUTION_STATUS) and accompanies no change of state. The events of a
        change are written in the change's transaction (subscriptions: the store's; the
        join's: the engine's)."""
        self._event_seq += 1
        event = status_event(
            event_id=f"{self.key}:{self._event_seq}",
            type_=type_,
            source=self._settings.worker_id,
            subscription_id=subscription_id,
            time=datetime.now(UTC),
            details=details,
        )
        self._produce(topics.STATUS, encode_json(event), self._settings.worker_id.encode())

    async def _status_loop(self) -> None:
        while not self.should_stop:
            await self.sleep(self._status_interval)
            try:
                await self._publish_periodic_status()
            except Exception as exc:  # noqa: BLE001 - status events must not stop the worker
                log.warning("could not publish status events: %r", exc)

    async def _publish_periodic_status(self) -> None:
        report = self.reports.get(self.key) or self.current_report()
        await self.publish_status(
            StatusType.HEALTH,
            {
                "worker_id": self._settings.worker_id,
                "url": self._settings.canonical_url,
                "partitions": report.get("partitions", []),
                "lag": report.get("lag", 0),
            },
        )
        await self.publish_status(
            StatusType.PERFORMANCE,
            {
                "confirmations_per_s": report.get("rate_per_s", 0.0),
                "distribution_latency_ms": self._stats.overall.percentiles(),
            },
        )
        for index, (subscription_id, delivery) in enumerate(
            list(self._stats.by_subscription.items())
        ):
            if index and index % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # with many subscriptions, let the engine run between
            await self.publish_status(
                StatusType.DISTRIBUTION_STATUS,
                {
                    "delivered": delivery.delivered,
                    "last_delivery_at": None
                    if delivery.last_delivery is None
                    else format_time(delivery.last_delivery),
                    "latency_ms": delivery.latency.percentiles(),
                },
                subscription_id=subscription_id,
            )

    # ---- cluster view -------------------------------------------------------------------

    def live_reports(self) -> list[dict[str, object]]:
        now = datetime.now(UTC)
        live = []
        for report in self.reports.values():
            seen = parse_stored_time(report["time"])
            if not report.get("stopped") and now - seen <= STALE_AFTER:
                live.append(report)
        return sorted(live, key=lambda r: str(r["worker_id"]))

    def owner_url(self, partition: int) -> str | None:
        """The URL of another live worker that reports holding ``partition``, if any."""
        own = self._settings.canonical_url.rstrip("/")
        for report in self.live_reports():
            owned = report.get("partitions")
            if isinstance(owned, list) and partition in owned:
                url = str(report.get("url", ""))
                if url and url.rstrip("/") != own:
                    return url
        return None

    def subscription_delivery(self, subscription_id: str) -> tuple[SubscriptionDelivery, int]:
        """Merged figures of one subscription over every report, and how many reported it."""
        total = SubscriptionDelivery()
        reporting = 0
        for report in self.reports.values():
            delivery = report.get("delivery")
            if isinstance(delivery, Mapping) and subscription_id in delivery:
                entry = delivery[subscription_id]
                if isinstance(entry, Mapping):
                    total.merge(SubscriptionDelivery.from_dict(entry))
                    reporting += 1
        return total, reporting

    def subscription_rate(self, subscription_id: str) -> float:
        """Deliveries per second, summed over the live workers' last reports."""
        total = 0.0
        for report in self.live_reports():
            rates = report.get("delivery_rates")
            if isinstance(rates, Mapping):
                total += float(str(rates.get(subscription_id, 0.0)))
        return total

    def cluster_latency(self) -> LatencyHistogram:
        merged = LatencyHistogram()
        for report in self.live_reports():
            latency = report.get("latency")
            if isinstance(latency, Mapping):
                merged.merge(LatencyHistogram.from_dict(latency))
        return merged


def _log_failed_delivery(error: KafkaError | None, message: Message) -> None:
    if error is not None:
        log.warning(
            "a report or status event to %s was not delivered: %s", message.topic(), error.str()
        )
