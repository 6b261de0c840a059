"""The composition root: :func:`create_app` builds a fully wired worker from settings.

Nothing here runs at import time; ``execdist.cli`` calls :func:`create_app` when a worker
starts, and tests call it with their own settings.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import faust
from faust.app.base import BootStrategy
from mode import ServiceT
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.agents.anomalies import AnomalyFlags
from execdist.agents.backfill import SubscriptionBackfill
from execdist.agents.continuity import InputContinuity
from execdist.agents.dead_letters import DeadLetters
from execdist.agents.join import JoinProcessor, utc_now
from execdist.agents.positions import PositionsProcessor
from execdist.agents.routing import SubscriptionRouter
from execdist.agents.sequencing import SubscriberSequencer
from execdist.agents.subscriber_output import SubscriberOutput
from execdist.auth import Guard
from execdist.codecs.input import InputDecoder
from execdist.domain.delivery import DeliveryStats
from execdist.grpc.server import GrpcServer
from execdist.metrics import Metrics
from execdist.relay.hub import RelayHub
from execdist.runtime.engine import Engine
from execdist.runtime.topology import Topology
from execdist.runtime.transaction import WorkerTransaction
from execdist.services.analytics import Analytics, AnalyticsQueries
from execdist.services.book import BookQueries, BookReader
from execdist.services.readiness import ReadinessTracker
from execdist.services.state_queries import StateQueries
from execdist.services.subscription_audit import SubscriptionAudit
from execdist.services.subscription_changes import SubscriptionChanges
from execdist.services.subscription_store import SubscriptionStore
from execdist.services.webhooks import WebhookDispatcher
from execdist.services.worker_reports import WorkerReports
from execdist.settings import Settings
from execdist.tables.declarations import (
    ANOMALY_STATS,
    BLOCK_CACHE_BYTES,
    HISTORY,
    ORDER_STATE,
    POSITIONS,
    SUB_SEQ,
    TIMERS,
    TableSpec,
)
from execdist.tables.store import PartitionedState, RocksTables
from execdist.web.analytics import register_analytics_views
from execdist.web.blotter import register_blotter
from execdist.web.book import register_book_views
from execdist.web.docs import register_docs
from execdist.web.streams import register_stream_views
from execdist.web.subscriptions import register_subscription_views
from execdist.web.tokens import register_token_views
from execdist.web.views import register_health_views, register_state_views

log = logging.getLogger(__name__)

INPUT_TOPICS = (topics.ORDERS, topics.EXECUTIONS)


def worker_data_dir(settings: Settings) -> str:
    """Each worker keeps its RocksDB files apart, so several can share one machine."""
    return str(settings.data_dir / f"worker-{settings.web_port}")


def transactional_id(settings: Settings, data_dir: Path, role: str = "worker") -> str:
    """A transactional id of the worker, kept in its data folder across restarts.

    A worker restarted on the same folder takes the same id back, so its first
    ``init_transactions`` aborts whatever transaction its previous incarnation left open at
    once, instead of after the transaction timeout. Zombies are fenced by the group
    generation (KIP-447), not by the id, so each worker process has an id of its own. The
    engine's producer is the ``worker`` role; the subscription store's is ``subscriptions``.
    """
    path = data_dir / ("transactional-id" if role == "worker" else f"{role}-transactional-id")
    if path.exists():
        return path.read_text().strip()
    value = f"{settings.app_id}-{role}-{uuid.uuid4().hex[:12]}"
    path.write_text(value + "\n")
    return value


class _App(faust.App):  # type: ignore[misc]
    """The worker's app: Faust serves the web views; execdist's own services do the rest.

    The engine reads and writes Kafka itself (:mod:`execdist.runtime.engine`), so Faust
    starts no consumer, producer, tables or agents: only its web server and execdist's
    services.
    """

    def __init__(self, app_id: str, *, services: list[ServiceT], **options: Any) -> None:
        self.services = services
        """execdist's own services, started after the web server in this order."""
        super().__init__(app_id, **options)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        self.monitor.beacon.reattach(self.beacon)
        self.monitor.loop = self.loop
        # the web server only: Faust's own Kafka producer would connect and idle
        boot = cast(BootStrategy, self.boot_strategy)
        return [*boot.web_server(), *self.services]


def create_app(settings: Settings, tables: list[TableSpec]) -> faust.App:
    """Build the app, its pipeline, tables, services and views from ``settings``; ``tables``
    as :func:`~execdist.infra.kafka_admin.ensure_topics` found the deployment's changelogs."""
    data_dir = Path(worker_data_dir(settings))
    data_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics()
    rocks = RocksTables(data_dir / "tables", tables, BLOCK_CACHE_BYTES)
    transaction = WorkerTransaction(settings, transactional_id(settings, data_dir))
    specs = {spec.name: spec for spec in rocks.specs.values()}
    states = PartitionedState(rocks, specs[ORDER_STATE])
    timers = PartitionedState(rocks, specs[TIMERS])
    positions = PartitionedState(rocks, specs[POSITIONS])
    history = PartitionedState(rocks, specs[HISTORY])
    anomaly_stats = PartitionedState(rocks, specs[ANOMALY_STATS])
    registry = AsyncSchemaRegistryClient(url=settings.schema_registry_url)
    subscriptions = SubscriptionStore(
        settings, transactional_id(settings, data_dir, "subscriptions")
    )
    audit = SubscriptionAudit(settings)
    guard = Guard(settings.admin_token, subscriptions)
    stats = DeliveryStats()
    dead_letters = DeadLetters(settings, transaction, metrics, utc_now)
    sub_seqs = PartitionedState(rocks, specs[SUB_SEQ])
    sequencer = SubscriberSequencer(
        sub_seqs,
        transaction,
        subscriptions.index,
        settings.topic_partitions,
        set_aside=dead_letters.set_aside,
    )
    output = SubscriberOutput(sequencer, registry, metrics)
    backfill = SubscriptionBackfill(
        history,
        timers,
        subscriptions.index,
        output,
        metrics,
        slice_s=settings.backfill_slice.total_seconds(),
    )
    analytics = Analytics(metrics)
    router = SubscriptionRouter(subscriptions.index, output, backfill, stats, metrics, analytics)
    positions_processor = PositionsProcessor(
        positions, transaction, settings.topic_partitions, set_aside=dead_letters.set_aside
    )
    join = JoinProcessor(
        settings=settings,
        states=states,
        timers=timers,
        history=history,
        out=transaction,
        decoder=InputDecoder(registry),
        metrics=metrics,
        anomalies=AnomalyFlags(anomaly_stats, settings.anomaly_rules, metrics),
        confirmation_sinks=[router],
        positions=positions_processor,
    )
    topology = Topology(
        sources={
            topics.ORDERS: join,
            topics.EXECUTIONS: join,
            topics.POSITIONS_BY_ACCOUNT: positions_processor,
            topics.SUBSCRIBER_ROUTE: sequencer,
        },
        # the join's timeouts and expiry first, then the backfills go on
        punctuators=[join.punctuate, backfill.punctuate],
        tables=[states, timers, positions, history, sub_seqs, anomaly_stats],
        continuity=InputContinuity(timers),
        # route nothing before every subscription in force is known
        ready=subscriptions.loaded.wait,
        commit_followers=[stats, analytics],
    )
    pipeline = Engine(settings, topology, rocks, transaction, metrics)
    reports = WorkerReports(settings, stats, pipeline, metrics)
    relay = RelayHub(settings, InputDecoder(registry), metrics)
    app = _App(
        settings.app_id,
        broker=settings.broker_url,
        datadir=str(data_dir),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        canonical_url=settings.canonical_url,
        autodiscover=False,
        web_enabled=True,
        services=[
            subscriptions,
            audit,
            reports,
            relay,
            pipeline,
            GrpcServer(settings, guard, subscriptions, relay),
            WebhookDispatcher(settings, subscriptions, InputDecoder(registry), stats),
            analytics,
        ],
    )
    ready = ReadinessTracker(pipeline, subscriptions)
    changes = SubscriptionChanges(settings, subscriptions, audit, registry)
    register_health_views(app, settings, ready, metrics)
    register_state_views(
        app, settings, guard, StateQueries(states, history, positions), pipeline, reports
    )
    register_subscription_views(app, settings, subscriptions, changes, reports, guard)
    register_stream_views(app, subscriptions, relay, stats, guard)
    register_token_views(app, guard, subscriptions)
    book_reader = BookReader(settings, states, positions, pipeline)
    register_book_views(
        app, settings, guard, BookQueries(settings, book_reader, reports), book_reader
    )
    register_analytics_views(app, guard, AnalyticsQueries(settings, analytics, reports), analytics)
    register_docs(app)
    register_blotter(app)
    return app
