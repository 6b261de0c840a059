"""The composition root: :func:`create_app` builds a fully wired Faust app from settings.

Nothing here runs at import time; ``execdist.cli`` calls :func:`create_app` when a worker
starts, and tests call it with their own settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from mode import ServiceT
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.agents.continuity import InputContinuity
from execdist.agents.join import JoinProcessor
from execdist.agents.positions import PositionsProcessor
from execdist.agents.publishing import CommitGate, ExecDistApp, TransactionalPublisher
from execdist.agents.routing import SubscriptionRouter
from execdist.agents.ticks import request_ticks
from execdist.codecs.input import InputDecoder
from execdist.domain.delivery import DeliveryStats
from execdist.grpc.server import GrpcServer
from execdist.metrics import Metrics
from execdist.relay.hub import RelayHub
from execdist.services.subscription_store import SubscriptionStore
from execdist.services.worker_reports import WorkerReports
from execdist.settings import Settings
from execdist.tables import rocksdb_store
from execdist.tables.declarations import declare_tables
from execdist.tables.store import PartitionedState
from execdist.web.blotter import register_blotter
from execdist.web.docs import register_docs
from execdist.web.streams import register_stream_views
from execdist.web.subscriptions import register_subscription_views
from execdist.web.views import register_views

log = logging.getLogger(__name__)

INPUT_TOPICS = (topics.ORDERS, topics.EXECUTIONS)


@dataclass
class Components:
    """Everything the agents and views share; built once per app."""

    settings: Settings
    metrics: Metrics
    registry: AsyncSchemaRegistryClient
    publisher: TransactionalPublisher
    states: PartitionedState
    timers: PartitionedState
    positions: PartitionedState
    join: JoinProcessor
    subscriptions: SubscriptionStore
    stats: DeliveryStats
    reports: WorkerReports
    relay: RelayHub
    ready: ReadinessTracker


class ReadinessTracker:
    """Ready once partitions are assigned, tables recovered and subscriptions loaded."""

    def __init__(self, app: faust.App, subscriptions: SubscriptionStore) -> None:
        self._app = app
        self._subscriptions = subscriptions
        self.assigned = False

    def on_assigned(self, *_: Any, **__: Any) -> None:
        self.assigned = True

    @property
    def ready(self) -> bool:
        recovery = self._app.tables.recovery
        return (
            self.assigned
            and not self._app.rebalancing
            and recovery.completed.is_set()
            and not recovery.in_recovery
            and self._subscriptions.loaded.is_set()
        )


def worker_data_dir(settings: Settings) -> str:
    """Each worker keeps its RocksDB files apart, so several can share one machine."""
    return str(settings.data_dir / f"worker-{settings.web_port}")


class _App(ExecDistApp):
    """The worker's app: also starts and stops execdist's own services."""

    services: list[ServiceT]

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        return [*super().on_init_dependencies(), *self.services]


def describe_worker(app: faust.App, metrics: Metrics) -> dict[str, object]:
    """What this worker reports about itself: input partitions, lag and totals."""
    assigned = sorted(tp for tp in app.assignor.assigned_actives() if tp.topic in INPUT_TOPICS)
    lag = 0
    consumer = app.consumer
    for tp in assigned:
        highwater = consumer.highwater(tp)
        committed = consumer._committed_offset.get(tp)
        if highwater is not None:
            lag += max(highwater - (committed or 0), 0)
    confirmations = sum(
        sample.value
        for metric in metrics.confirmations.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    return {
        "partitions": sorted({tp.partition for tp in assigned}),
        "lag": lag,
        "confirmations_total": int(confirmations),
    }


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app, its topics, tables, agents, services and views from ``settings``."""
    Path(worker_data_dir(settings)).mkdir(parents=True, exist_ok=True)
    app = _App(
        settings.app_id,
        broker=settings.broker_url,
        store=rocksdb_store.register(),
        datadir=worker_data_dir(settings),
        processing_guarantee="exactly_once",
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        canonical_url=settings.canonical_url,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        # Outputs become visible to read_committed readers when their transaction commits:
        # commit often, so confirmations leave within milliseconds, not seconds.
        broker_commit_interval=0.1,
        broker_commit_every=1000,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout.total_seconds(),
        broker_heartbeat_interval=max(settings.session_timeout.total_seconds() / 4, 0.5),
        table_standby_replicas=0,
        autodiscover=False,
        web_enabled=True,
        producer_linger_ms=1,
        stream_buffer_maxsize=4096,
    )
    app.commit_gate = gate = CommitGate()
    metrics = Metrics()
    publisher = TransactionalPublisher(app)
    tables = declare_tables(app, settings)
    states = PartitionedState(tables.order_states, publisher)
    timers = PartitionedState(tables.timers, publisher)
    positions = PartitionedState(tables.positions, publisher)
    registry = AsyncSchemaRegistryClient(url=settings.schema_registry_url)
    join = JoinProcessor(
        settings=settings,
        states=states,
        timers=timers,
        publisher=publisher,
        decoder=InputDecoder(registry),
        metrics=metrics,
    )
    subscriptions = SubscriptionStore(settings)
    stats = DeliveryStats()
    reports = WorkerReports(settings, stats, lambda: describe_worker(app, metrics))
    relay = RelayHub(settings, InputDecoder(registry))
    app.services = [subscriptions, reports, relay]
    app.services.append(GrpcServer(settings, subscriptions, relay))
    join.confirmation_sinks.append(
        SubscriptionRouter(subscriptions.index, publisher, registry, stats, metrics)
    )
    continuity = InputContinuity(timers)
    gate.before_commit = continuity.flush
    ready = ReadinessTracker(app, subscriptions)
    components = Components(
        settings=settings,
        metrics=metrics,
        registry=registry,
        publisher=publisher,
        states=states,
        timers=timers,
        positions=positions,
        join=join,
        subscriptions=subscriptions,
        stats=stats,
        reports=reports,
        relay=relay,
        ready=ready,
    )
    app.on_partitions_assigned.connect(ready.on_assigned)  # type: ignore[arg-type]

    @app.on_partitions_assigned.connect  # type: ignore[misc]
    async def _forget_new_partitions(sender: object, assigned: set[Any], **_: object) -> None:
        continuity.on_assigned(assigned)


    async def recovered() -> None:
        """Hold an event back while its tables are being restored.

        Faust can hand an agent events fetched just before table recovery began; applied
        against half-restored state they would be wrong. If another rebalance starts while
        waiting, the wait ends (the revocation waits for this event in turn) and Faust's
        own ordering applies.
        """
        generation = app.consumer_generation_id
        recovery = app.tables.recovery
        while recovery.in_recovery and app.consumer_generation_id == generation:
            await asyncio.sleep(0.01)

    join_source = app.topic(
        topics.ORDERS,
        topics.EXECUTIONS,
        topics.TICKS,
        partitions=settings.topic_partitions,
        replicas=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(join_source, name="execdist.join")
    async def join_agent(stream: faust.StreamT[bytes]) -> None:
        # Route nothing before every subscription in force is known.
        await subscriptions.loaded.wait()
        async for event in stream.events():
            message = event.message
            await recovered()
            async with gate.lock:
                if continuity.admit(message.tp, message.offset):
                    await join.handle(
                        message.tp, message.offset, message.key, message.value, message.timestamp
                    )
                event.ack()

    positions_processor = PositionsProcessor(positions)
    positions_source = app.topic(
        topics.POSITIONS_BY_ACCOUNT,
        partitions=settings.topic_partitions,
        replicas=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(positions_source, name="execdist.positions")
    async def positions_agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            await recovered()
            async with gate.lock:
                if continuity.admit(message.tp, message.offset):
                    await positions_processor.handle(message.tp, message.key, message.value)
                event.ack()

    @app.timer(settings.tick_interval.total_seconds(), on_leader=False)
    async def tick_timer() -> None:
        await request_ticks(app)

    register_views(app, components)
    register_subscription_views(app, components)
    register_stream_views(app, components)
    register_docs(app)
    register_blotter(app)
    app.execdist = components  # type: ignore[attr-defined]
    return app
