"""Outputs that commit atomically with the input they came from.

Under ``processing_guarantee="exactly_once"`` Faust keeps one transactional producer per
assigned source partition (transactional id ``{app_id}-{group}-{partition}``), and commits the
input offsets of that partition through it. Faust's own ``TransactionManager.send`` picks the
producer from the *destination* partition, which is only right when the destination is a
co-partitioned topic at the same partition number (the tables' changelogs); it is wrong for
``execdist.confirmations`` (the key may hash elsewhere), and fails for topics outside the
assignor's groups (``execdist.sub.*``, ``execdist.status``, ``execdist.dlq``).

:class:`TransactionalPublisher` therefore sends every output with the producer of the *source*
partition being processed, so outputs, table changelog writes and the input offset commit in
one Kafka transaction, or not at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import faust
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from faust.types import TP
from faust.types.tuples import RecordMetadata


class TransactionalPublisher:
    """Sends records inside the transaction of a given source partition."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    def transactional_id(self, source: TP) -> str | None:
        """The transactional id Faust uses for ``source``, or ``None`` without transactions."""
        if not self._app.in_transaction:
            return None
        group = self._app.assignor.group_for_topic(source.topic)
        return f"{self._app.conf.id}-{group}-{source.partition}"

    async def send(
        self,
        source: TP,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Queue one record; it becomes visible when the source partition's transaction commits.

        Returns the delivery future; callers need not await it, since the commit flushes first.
        """
        producer = self._app.producer
        return await producer.send(
            topic,
            key,
            value,
            partition,
            None,
            list(headers) if headers is not None else None,
            transactional_id=self.transactional_id(source),
        )


class CommitGate:
    """Keeps transaction commits between events, never in the middle of one.

    Faust commits on a timer while an agent may be half-way through an event: the commit
    would then hold some of the event's outputs and state writes but not its offset (or the
    other way round), and a crash before the next commit would replay the event against state
    that already has part of it. Agents process each event, and ack it, while holding the gate;
    :class:`GatedTransactionManager` holds it while committing.
    """

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.before_commit: Callable[[], Awaitable[None]] = _nothing


async def _nothing() -> None:
    return None


class GatedTransactionManager(TransactionManager):  # type: ignore[misc]
    """Faust's transaction manager, committing only while no event is being processed."""

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        gate: CommitGate = self.app.commit_gate
        async with gate.lock:
            # the state records which input offsets it holds, in the same transaction
            await gate.before_commit()
            return bool(await super().commit(offsets, start_new_transaction=start_new_transaction))


class StableHighwaterConsumerThread(AIOKafkaConsumerThread):  # type: ignore[misc]
    """Asks the broker for the last stable offsets before restoring tables.

    Under transactions Faust takes a changelog's highwater from the consumer's cached
    ``last_stable_offset``, which is unknown (-1) until that partition has been fetched: a
    newly assigned partition then looks empty and its table is not restored at all. A
    ``read_committed`` ListOffsets request returns the real last stable offset.
    """

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        return dict(await consumer.end_offsets(partitions))


class StableHighwaterConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> StableHighwaterConsumerThread:
        return StableHighwaterConsumerThread(self, loop=self.loop, beacon=self.beacon)


class GatedTransport(AIOKafkaTransport):  # type: ignore[misc]
    TransactionManager = GatedTransactionManager
    Consumer = StableHighwaterConsumer


class ExecDistApp(faust.App):  # type: ignore[misc]
    """faust.App whose consumer commits through :class:`GatedTransactionManager`."""

    commit_gate: CommitGate

    def _new_transport(self) -> GatedTransport:
        return GatedTransport(self.conf.broker_consumer, self)
