"""The composition root: :func:`create_app` builds a fully wired Faust app from settings.

Nothing here runs at import time; ``execdist.cli`` calls :func:`create_app` when a worker
starts, and tests call it with their own settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import TP
from schema_registry.client import AsyncSchemaRegistryClient

from execdist import topics
from execdist.agents.join import JoinProcessor
from execdist.agents.positions import PositionsProcessor
from execdist.agents.publishing import CommitGate, ExecDistApp, TransactionalPublisher
from execdist.agents.ticks import request_ticks
from execdist.codecs.input import InputDecoder
from execdist.metrics import Metrics
from execdist.settings import Settings
from execdist.tables import rocksdb_store
from execdist.tables.declarations import declare_tables
from execdist.tables.store import PartitionedState
from execdist.web.views import register_views

log = logging.getLogger(__name__)


@dataclass
class Components:
    """Everything the agents and views share; built once per app."""

    settings: Settings
    metrics: Metrics
    publisher: TransactionalPublisher
    states: PartitionedState
    timers: PartitionedState
    positions: PartitionedState
    join: JoinProcessor
    ready: ReadinessTracker


class ReadinessTracker:
    """Ready once partitions are assigned and table recovery has completed."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
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
        )


def worker_data_dir(settings: Settings) -> str:
    """Each worker keeps its RocksDB files apart, so several can share one machine."""
    return str(settings.data_dir / f"worker-{settings.web_port}")


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app, its topics, tables, agents and web views from ``settings``."""
    Path(worker_data_dir(settings)).mkdir(parents=True, exist_ok=True)
    app = ExecDistApp(
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
    ready = ReadinessTracker(app)
    components = Components(
        settings, metrics, publisher, states, timers, positions, join, ready
    )
    app.on_partitions_assigned.connect(ready.on_assigned)  # type: ignore[arg-type]

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
        async for event in stream.events():
            message = event.message
            async with gate.lock:
                await join.handle(message.tp, message.offset, message.key, message.value)
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
            async with gate.lock:
                await positions_processor.handle(message.tp, message.key, message.value)
                event.ack()

    @app.timer(settings.tick_interval.total_seconds(), on_leader=False)
    async def tick_timer() -> None:
        await request_ticks(app)

    register_views(app, components)
    app.execdist = components  # type: ignore[attr-defined]
    return app


def source_tp(topic: str, partition: int) -> TP:
    return TP(topic, partition)
