"""How far a subscription's topic has got, and how far its downstream has read.

``last_sub_seq``: the highest ``sub_seq`` on the subscription's topic, from the last records
of each partition (read ``read_committed``). ``acknowledged_sub_seq`` from a consumer group:
the highest ``N`` such that every record up to ``sub_seq`` ``N`` lies before the group's
committed offset of its partition, found from the first record at or after each committed
offset. Both are read with a librdkafka consumer in a thread, per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from execdist.infra import clients
from execdist.services.topic_scan import header_sub_seq, read_to_end
from execdist.settings import Settings

TAIL = 16
"""Records read back from each partition's end to find its last sub_seq (transaction markers
take offsets too)."""
TIME_BUDGET_S = 5.0


class ProgressUnavailable(Exception):
    """The broker did not answer in time; worth retrying."""


@dataclass(frozen=True)
class Progress:
    last_sub_seq: int | None
    group_acknowledged: int | None
    """From the consumer group, when the subscription names one and it committed offsets."""


async def read_progress(
    settings: Settings, topic: str, partitions: int, consumer_group: str | None
) -> Progress:
    return await asyncio.to_thread(_progress, settings, topic, partitions, consumer_group)


def _progress(
    settings: Settings, topic: str, partitions: int, consumer_group: str | None
) -> Progress:
    deadline = time.monotonic() + TIME_BUDGET_S
    consumer = (
        clients.scan_consumer(settings, "progress")
        if consumer_group is None
        else clients.group_offsets_reader(settings, consumer_group)
    )
    try:
        bounds = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIME_BUDGET_S)
            for p in range(partitions)
        }
        tails = {p: (max(low, high - TAIL), high) for p, (low, high) in bounds.items()}
        last = _highest(_sub_seqs(consumer, topic, tails, deadline, first_only=False))
        acknowledged = None
        if consumer_group is not None:
            committed = consumer.committed(
                [TopicPartition(topic, p) for p in range(partitions)], timeout=TIME_BUDGET_S
            )
            offsets = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
            if offsets:
                acknowledged = _acknowledged(consumer, topic, bounds, offsets, last, deadline)
        return Progress(last, acknowledged)
    except KafkaException as exc:
        raise ProgressUnavailable(f"the broker did not answer: {exc}") from exc
    finally:
        consumer.close()


def _acknowledged(
    consumer: Consumer,
    topic: str,
    bounds: dict[int, tuple[int, int]],
    offsets: dict[int, int],
    last: int | None,
    deadline: float,
) -> int | None:
    """The sub_seq before the first record the group has not read in any partition."""
    unread = {
        p: (max(offsets.get(p, low), low), high)
        for p, (low, high) in bounds.items()
        if max(offsets.get(p, low), low) < high
    }
    firsts = _sub_seqs(consumer, topic, unread, deadline, first_only=True)
    first_unread = [seq for seq in firsts.values() if seq is not None]
    if first_unread:
        return min(first_unread) - 1
    return last


def _sub_seqs(
    consumer: Consumer,
    topic: str,
    ranges: dict[int, tuple[int, int]],
    deadline: float,
    *,
    first_only: bool,
) -> dict[int, int | None]:
    """Per partition, the highest (or with ``first_only`` the first) sub_seq of the records in
    its ``[start, end)`` range."""
    found: dict[int, int | None] = {p: None for p in ranges}
    wanted = {p: end for p, (start, end) in ranges.items() if start < end}
    if not wanted:
        return found
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in wanted])
    try:
        for message in read_to_end(consumer, wanted, deadline):
            partition = message.partition()
            assert partition is not None
            sub_seq = header_sub_seq(message.headers())
            if sub_seq is None:
                continue
            if first_only:
                if found[partition] is None:
                    found[partition] = sub_seq
                    wanted.pop(partition, None)
            else:
                found[partition] = max(found[partition] or 0, sub_seq)
    finally:
        consumer.unassign()
    if wanted and time.monotonic() > deadline:
        raise ProgressUnavailable("the subscription's topic was not read in time")
    return found


def _highest(found: dict[int, int | None]) -> int | None:
    values = [seq for seq in found.values() if seq is not None]
    return max(values) if values else None
