"""A consumer that reads one single-partition internal topic from its start and follows it.

Both the subscription store and the worker reports keep a full copy of a small compacted topic
on every worker; this is how they read it (no consumer group: every worker reads everything).

A follower's fetch waits at the broker until a record comes or the wait ends
(:data:`~execdist.infra.clients.FOLLOWER_FETCH_WAIT_MS`), and the broker answers a connection's
requests one at a time: a request sent on the follower's connection meanwhile waits for the
fetch. So a follower asks how far its topic goes (read-your-writes) with :class:`EndOffsets`,
on a connection of its own.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from execdist.infra import clients
from execdist.settings import Settings


async def follow_from_start(
    settings: Settings, topic: str, *, read_committed: bool
) -> tuple[AIOKafkaConsumer, TopicPartition]:
    """A started consumer assigned to partition 0 of ``topic``, positioned at its start."""
    consumer = clients.follower(settings, read_committed=read_committed)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    return consumer, tp


class EndOffsets:
    """Asks where a partition ends, on a connection no fetch waits on: the last stable offset
    for a ``read_committed`` follower (a transaction still open is not waited for)."""

    def __init__(self, settings: Settings, *, read_committed: bool) -> None:
        self._settings = settings
        self._read_committed = read_committed
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect (on the event loop: an aiokafka client is made on the loop it runs on)."""
        consumer = clients.offsets_reader(self._settings, read_committed=self._read_committed)
        await consumer.start()
        self._consumer = consumer

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def of(self, tp: TopicPartition) -> int:
        if self._consumer is None:
            raise RuntimeError("EndOffsets is not started")
        return int((await self._consumer.end_offsets([tp]))[tp])
