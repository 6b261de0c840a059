"""A consumer that reads one single-partition internal topic from its start and follows it.

Both the subscription store and the worker reports keep a full copy of a small compacted topic
on every worker; this is how they read it (no consumer group: every worker reads everything).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from execdist.infra import clients
from execdist.settings import Settings


async def follow_from_start(
    settings: Settings, topic: str, *, read_committed: bool, fetch_max_wait_ms: int
) -> tuple[AIOKafkaConsumer, TopicPartition]:
    """A started consumer assigned to partition 0 of ``topic``, positioned at its start."""
    consumer = clients.follower(
        settings, read_committed=read_committed, fetch_max_wait_ms=fetch_max_wait_ms
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    return consumer, tp
