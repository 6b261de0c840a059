"""Outputs that commit atomically with the input they came from.

Every input partition has its own transactional producer (transactional id
``<app id>-pipeline-<partition>``, so a restarted or newly assigned owner fences the previous
one). :class:`TransactionalPublisher` sends every output, table changelog record and the input
offsets of a batch with the producer of the *source* partition: they commit in one Kafka
transaction, or not at all, whichever partition or topic the output goes to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer

from execdist.topics import TP


class CommitFailed(Exception):
    """A transaction's records or offsets were not all acknowledged; says which topics."""


class PartitionTransaction:
    """The transactional producer of one input partition and its open transaction."""

    def __init__(self, partition: int, producer: AIOKafkaProducer) -> None:
        self.partition = partition
        self.producer = producer
        self._open = False
        self._deliveries: list[asyncio.Future[object]] = []
        self._topics: list[str] = []
        """The topic of each delivery, to name what was not delivered when a commit fails."""
        self._tracked: set[str] = set()

    async def _begin(self) -> None:
        if not self._open:
            await self.producer.begin_transaction()
            self._open = True

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record in the open transaction (opened on the first send)."""
        await self._begin()
        if topic not in self._tracked:
            await self._track(topic)
        delivery = await self.producer.send(
            topic,
            value,
            key=key,
            partition=partition,
            headers=list(headers) if headers is not None else None,
        )
        self._deliveries.append(delivery)
        self._topics.append(topic)

    async def _track(self, topic: str) -> None:
        """Make the producer's metadata requests name ``topic`` from now on.

        aiokafka asks for every topic while it tracks none, and starts tracking a topic only
        when it is sent to while unknown. A topic it learned from such a full answer is never
        tracked, so the first send to a topic created later (a new subscription's) narrows its
        metadata to that topic alone: records already queued for the other topics then find no
        leader and wait until they expire (request_timeout_ms, 40 s), and the transaction fails.
        """
        await self.producer.client.add_topic(topic)
        self._tracked.add(topic)

    async def commit(self, offsets: dict[TP, int], group_id: str) -> int:
        """Commit the outputs queued so far together with the next input ``offsets``.

        Waits for every queued record to be acknowledged first, so a failed send fails the
        commit instead of committing a transaction that lacks it. Returns the records sent.
        """
        await self._begin()
        sent = len(self._deliveries)
        deliveries, self._deliveries = self._deliveries, []
        topics, self._topics = self._topics, []
        waits: list[Awaitable[object]] = list(deliveries)
        if offsets:
            # the offset commit's round trips overlap with the outputs' acknowledgements
            waits.append(self.producer.send_offsets_to_transaction(offsets, group_id))
        try:
            await asyncio.gather(*waits)
        except Exception as exc:
            undelivered = sorted(
                {
                    topic
                    for topic, delivery in zip(topics, deliveries, strict=True)
                    if not delivery.done() or delivery.cancelled() or delivery.exception()
                }
            )
            raise CommitFailed(f"{exc!r}; records not delivered to {undelivered}") from exc
        await self.producer.commit_transaction()
        self._open = False
        return sent

    async def close(self) -> None:
        """Stop the producer; an open transaction is aborted by the broker or the next owner."""
        for delivery in self._deliveries:
            delivery.cancel()
        self._deliveries.clear()
        self._topics.clear()
        await self.producer.stop()


class TransactionalPublisher:
    """Sends records inside the transaction of a given source partition."""

    def __init__(self, transaction_for: Callable[[int], PartitionTransaction]) -> None:
        self._transaction_for = transaction_for

    async def send(
        self,
        source: TP,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; it becomes visible when the source partition's transaction commits."""
        await self._transaction_for(source.partition).send(
            topic, key, value, headers=headers, partition=partition
        )

    async def send_to_partition(
        self, source_partition: int, topic: str, key: bytes, value: bytes | None
    ) -> None:
        """A table changelog record: same partition number as its source."""
        await self._transaction_for(source_partition).send(
            topic, key, value, partition=source_partition
        )
