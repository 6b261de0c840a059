"""The composition root: :func:`create_app` builds a fully wired worker from settings.

Nothing here runs at import time; ``execdist.cli`` calls :func:`create_app` when a worker
starts, and tests call it with their own settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import faust
from aiokafka.structs import ConsumerRecord
from mode import ServiceT
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.agents.continuity import InputContinuity
from execdist.agents.join import JoinProcessor
from execdist.agents.positions import PositionsProcessor
from execdist.agents.publishing import TransactionalPublisher
from execdist.agents.routing import SubscriptionRouter
from execdist.codecs.input import InputDecoder
from execdist.domain.delivery import DeliveryStats
from execdist.grpc.server import GrpcServer
from execdist.metrics import Metrics
from execdist.relay.hub import RelayHub
from execdist.runtime.pipeline import Pipeline
from execdist.services.subscription_store import SubscriptionStore
from execdist.services.worker_reports import WorkerReports
from execdist.settings import Settings
from execdist.tables.declarations import (
    BLOCK_CACHE_BYTES,
    HISTORY,
    ORDER_STATE,
    POSITIONS,
    TIMERS,
    table_specs,
)
from execdist.tables.store import PartitionedState, RocksTables
from execdist.topics import TP
from execdist.web.blotter import register_blotter
from execdist.web.docs import register_docs
from execdist.web.streams import register_stream_views
from execdist.web.subscriptions import register_subscription_views
from execdist.web.views import register_views

log = logging.getLogger(__name__)

INPUT_TOPICS = (topics.ORDERS, topics.EXECUTIONS)


@dataclass
class Components:
    """Everything the pipeline and views share; built once per app."""

    settings: Settings
    metrics: Metrics
    registry: AsyncSchemaRegistryClient
    pipeline: Pipeline
    states: PartitionedState
    timers: PartitionedState
    positions: PartitionedState
    history: PartitionedState
    join: JoinProcessor
    subscriptions: SubscriptionStore
    stats: DeliveryStats
    reports: WorkerReports
    relay: RelayHub
    ready: ReadinessTracker


class ReadinessTracker:
    """Ready once partitions are assigned, tables restored and subscriptions loaded."""

    def __init__(self, pipeline: Pipeline, subscriptions: SubscriptionStore) -> None:
        self._pipeline = pipeline
        self._subscriptions = subscriptions

    @property
    def ready(self) -> bool:
        return self._pipeline.ready and self._subscriptions.loaded.is_set()


def worker_data_dir(settings: Settings) -> str:
    """Each worker keeps its RocksDB files apart, so several can share one machine."""
    return str(settings.data_dir / f"worker-{settings.web_port}")


class _App(faust.App):  # type: ignore[misc]
    """The worker's app: Faust serves the web views; execdist's own services do the rest.

    The pipeline reads and writes Kafka itself (:mod:`execdist.runtime.pipeline`), so Faust
    starts no consumer, tables or agents: only its web server and execdist's services.
    """

    services: list[ServiceT]

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        self.monitor.beacon.reattach(self.beacon)
        self.monitor.loop = self.loop
        return [*self.boot_strategy.producer_only(), *self.services]


def describe_worker(pipeline: Pipeline, metrics: Metrics) -> dict[str, object]:
    """What this worker reports about itself: input partitions, lag and totals."""
    confirmations = sum(
        sample.value
        for metric in metrics.confirmations.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    return {
        "partitions": pipeline.partitions,
        "lag": pipeline.lag(),
        "confirmations_total": int(confirmations),
    }


def create_app(settings: Settings) -> faust.App:
    """Build the app, its pipeline, tables, services and views from ``settings``."""
    data_dir = Path(worker_data_dir(settings))
    data_dir.mkdir(parents=True, exist_ok=True)
    app = _App(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
        datadir=str(data_dir),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        canonical_url=settings.canonical_url,
        autodiscover=False,
        web_enabled=True,
    )
    metrics = Metrics()
    rocks = RocksTables(data_dir / "tables", table_specs(settings.app_id), BLOCK_CACHE_BYTES)
    pipeline_ref: list[Pipeline] = []
    publisher = TransactionalPublisher(lambda partition: pipeline_ref[0].transaction(partition))
    specs = {spec.name: spec for spec in rocks.specs.values()}
    states = PartitionedState(rocks, specs[ORDER_STATE], publisher.send_to_partition)
    timers = PartitionedState(rocks, specs[TIMERS], publisher.send_to_partition)
    positions = PartitionedState(rocks, specs[POSITIONS], publisher.send_to_partition)
    history = PartitionedState(rocks, specs[HISTORY], publisher.send_to_partition)
    continuity = InputContinuity(timers)
    pipeline = Pipeline(settings, rocks, [states, timers, positions, history], continuity, metrics)
    pipeline_ref.append(pipeline)
    registry = AsyncSchemaRegistryClient(url=settings.schema_registry_url)
    join = JoinProcessor(
        settings=settings,
        states=states,
        timers=timers,
        history=history,
        publisher=publisher,
        decoder=InputDecoder(registry),
        metrics=metrics,
    )
    subscriptions = SubscriptionStore(settings)
    stats = DeliveryStats()
    reports = WorkerReports(settings, stats, lambda: describe_worker(pipeline, metrics))
    relay = RelayHub(settings, InputDecoder(registry))
    join.confirmation_sinks.append(
        SubscriptionRouter(subscriptions.index, publisher, registry, stats, metrics)
    )
    positions_processor = PositionsProcessor(positions)

    async def join_record(tp: TP, record: ConsumerRecord) -> None:
        timestamp = None if record.timestamp is None else record.timestamp / 1000
        await join.handle(tp, record.offset, record.key, record.value, timestamp)

    async def positions_record(tp: TP, record: ConsumerRecord) -> None:
        await positions_processor.handle(tp, record.key, record.value)

    async def set_aside(tp: TP, record: ConsumerRecord, error: str) -> None:
        await join.set_aside(tp, record.offset, record.key, record.value, error)

    pipeline.released.append(join.forget)
    pipeline.set_aside = set_aside
    pipeline.handlers = {
        topics.ORDERS: join_record,
        topics.EXECUTIONS: join_record,
        topics.TICKS: join_record,
        topics.POSITIONS_BY_ACCOUNT: positions_record,
    }
    # route nothing before every subscription in force is known
    pipeline.before_first_batch = subscriptions.loaded.wait
    app.services = [
        subscriptions,
        reports,
        relay,
        pipeline,
        GrpcServer(settings, subscriptions, relay),
    ]
    ready = ReadinessTracker(pipeline, subscriptions)
    components = Components(
        settings=settings,
        metrics=metrics,
        registry=registry,
        pipeline=pipeline,
        states=states,
        timers=timers,
        positions=positions,
        history=history,
        join=join,
        subscriptions=subscriptions,
        stats=stats,
        reports=reports,
        relay=relay,
        ready=ready,
    )

    register_views(app, components)
    register_subscription_views(app, components)
    register_stream_views(app, components)
    register_docs(app)
    register_blotter(app)
    app.execdist = components  # type: ignore[attr-defined]
    return app
