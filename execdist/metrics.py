"""Prometheus metrics of one worker, on a registry of its own (tests build many apps).

Every label set is bounded: by an enum (exec type, reason, status type, event), by the
partitions of the input topics, or by the subscriptions. The dashboard and alert rules in
``monitoring/`` use these names; a test checks that they use no other.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The worker's counters, gauges and histograms with conventional names and units."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.records_in = PlainCounter(
            "execdist_input_records_total",
            "Records read from the input topics.",
            ["topic"],
            registry=self.registry,
        )
        self.confirmations = PlainCounter(
            "execdist_confirmations_total",
            "Confirmations published, by exec type.",
            ["exec_type"],
            registry=self.registry,
        )
        self.dlq = Counter(
            "execdist_dlq_records_total",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "execdist_dropped_records_total",
            "Expected repeats dropped without output (identical duplicates, stale order replays).",
            ["kind"],
            registry=self.registry,
        )
        self.anomalies = Counter(
            "execdist_anomalies_total",
            "Confirmations flagged by an anomaly rule (PRICE_DEVIATION, SIZE_OUTLIER).",
            ["rule"],
            registry=self.registry,
        )
        self.status_events = Counter(
            "execdist_status_events_total",
            "Status events published, by type.",
            ["type"],
            registry=self.registry,
        )
        self.processing_seconds = PlainHistogram(
            "execdist_processing_seconds",
            "Time to process one input record in the join, from read to outputs queued.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.distribution_latency = PlainHistogram(
            "execdist_distribution_latency_seconds",
            "From the input record's timestamp to its confirmation being queued for delivery.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivered = PlainCounter(
            "execdist_subscription_delivered_total",
            "Confirmations queued for a subscription's topic.",
            ["subscription"],
            registry=self.registry,
        )
        self.expression_errors = Counter(
            "execdist_filter_expression_errors_total",
            "Confirmations a subscription's filter.expr could not be evaluated on (overflow, "
            "division by zero, ...); they are not delivered to it.",
            ["subscription"],
            registry=self.registry,
        )
        self.backfilled = Counter(
            "execdist_backfilled_total",
            "Confirmations from order history delivered to subscriptions created with "
            "backfill_from.",
            registry=self.registry,
        )
        self.window_executions = Gauge(
            "execdist_window_executions",
            "TRADE confirmations of the last hour on this worker, per symbol, venue, account or "
            "subscription: the top 20 keys of each by notional, and key 'other' for the rest.",
            ["by", "key"],
            registry=self.registry,
        )
        self.window_notional = Gauge(
            "execdist_window_notional",
            "Notional (last_qty x last_px) of the last hour's TRADE confirmations on this worker, "
            "per symbol, venue, account or subscription: the top 20 keys of each, and 'other'.",
            ["by", "key"],
            registry=self.registry,
        )
        self.subscriptions = Gauge(
            "execdist_subscriptions",
            "Subscriptions known to this worker, by status.",
            ["status"],
            registry=self.registry,
        )
        self.held_executions = Gauge(
            "execdist_held_orders",
            "Orders with executions held (waiting for their order or for a missing seq).",
            registry=self.registry,
        )
        self.expired_orders = Counter(
            "execdist_expired_orders_total",
            "Order states deleted after the order retention with nothing held.",
            registry=self.registry,
        )
        self.assigned_partitions = Gauge(
            "execdist_assigned_partitions",
            "Partitions of the input topics assigned to this worker.",
            registry=self.registry,
        )
        self.batch_seconds = PlainHistogram(
            "execdist_batch_seconds",
            "Time to process one batch and commit its transaction.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transaction_records = PlainHistogram(
            "execdist_transaction_records",
            "Records written per committed transaction (outputs and changelog).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
            registry=self.registry,
        )
        self.record_wait_seconds = PlainHistogram(
            "execdist_record_wait_seconds",
            "From an input record's timestamp to the start of the batch that processes it "
            "(in the broker, in the consumer's fetch, behind earlier batches), by source topic.",
            ["topic"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = PlainHistogram(
            "execdist_stage_seconds",
            "Time a batch spends in each stage of the engine: process, commit (from its start "
            "on the producer's thread to its outcome applied locally); within the commit, "
            "offsets (the input offsets put into the transaction), produce (then waiting for "
            "the records not yet acknowledged) and end (then commit_transaction, the "
            "transaction's end); punctuate (the "
            "timeouts, expiry and backfills of every owned partition, once per tick).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rebalances = Counter(
            "execdist_rebalances_total",
            "Rebalances of the pipeline's consumer group this worker took part in, by what "
            "it was told: assigned (a new assignment, possibly empty), revoked, lost.",
            ["event"],
            registry=self.registry,
        )
        self.input_lag = Gauge(
            "execdist_input_lag_records",
            "Records of an owned input partition after its last committed offset (as of the "
            "consumer's last fetch); updated every second.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.relay_clients = Gauge(
            "execdist_relay_clients",
            "Real-time clients (WebSocket, SSE, gRPC) of a subscription on this worker.",
            ["subscription"],
            registry=self.registry,
        )
        self.relay_lag = Gauge(
            "execdist_relay_lag_records",
            "Records of a subscription's topic that its furthest-behind real-time client on "
            "this worker has not been sent yet; updated every second.",
            ["subscription"],
            registry=self.registry,
        )
        self.relay_slow_clients = Counter(
            "execdist_relay_slow_clients_total",
            "Real-time clients closed for not keeping up (WebSocket 1013), by subscription.",
            ["subscription"],
            registry=self.registry,
        )


class LabelledChildren(dict[str, Any]):
    """``metric.labels(value)`` by value, each looked up once: ``children[value]``.

    prometheus-client takes a lock and builds a tuple on every ``labels()`` call, which is too
    much on the per-record path. A dict filled on first use, so that the usual lookup is the
    dict's own (a Python ``__call__`` or ``get`` method would cost about twice as much).
    """

    __slots__ = ("_metric",)

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self._metric = metric

    def __missing__(self, value: str) -> Any:
        child = self[value] = self._metric.labels(value)
        return child


class PlainCounter:
    """A counter for the per-record path, exposed like a prometheus-client ``Counter``.

    prometheus-client takes a lock and checks its state on every ``inc`` and ``observe``
    (about 1 and 3 us here, several times per record); these keep a plain float per label
    set and are read only when ``/metrics`` is scraped. Updated from the worker's event loop
    only, never from another thread.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        registry: CollectorRegistry,
    ) -> None:
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _CounterValue] = {}
        self._unlabelled = None if self._labelnames else self.labels()
        registry.register(self)

    def labels(self, *values: str) -> _CounterValue:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _CounterValue()
        return child

    def inc(self, amount: float = 1) -> None:
        assert self._unlabelled is not None, "a labelled counter counts through labels()"
        self._unlabelled.value += amount

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        return [family]


class _CounterValue:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class PlainHistogram:
    """A histogram for the per-record path, exposed like a prometheus-client ``Histogram``
    (see :class:`PlainCounter` for why)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = tuple(float(bound) for bound in buckets)
        self._children: dict[tuple[str, ...], _HistogramValue] = {}
        self._unlabelled = None if self._labelnames else self.labels()
        registry.register(self)

    def labels(self, *values: str) -> _HistogramValue:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _HistogramValue(self._bounds)
        return child

    def observe(self, value: float) -> None:
        assert self._unlabelled is not None, "a labelled histogram observes through labels()"
        self._unlabelled.observe(value)

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in list(self._children.items()):
            cumulative = list(accumulate(child.counts))
            buckets = [
                (floatToGoString(bound), float(count))  # type: ignore[no-untyped-call]
                for bound, count in zip((*self._bounds, math.inf), cumulative, strict=True)
            ]
            family.add_metric(list(values), buckets, child.sum)
        return [family]


class _HistogramValue:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # the first bucket whose upper bound ("le") is at or above the value; the last: +Inf
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
