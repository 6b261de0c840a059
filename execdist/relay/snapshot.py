"""Snapshot, then live: the latest record of every order on a subscription's topic, and the
cursor it was taken at.

A screen opened at 3 pm wants every order of the day at once, not a replay of its history. The
snapshot reads the topic ``read_committed`` from its beginning to its end (:mod:`..services.
topic_scan`, in a thread) and keeps, per order (the record key), the last record: an order's
records are all in one partition, in ``sub_seq`` order. The cursor is where the reader stopped
in each partition, so a client that goes on live from that cursor gets every record after the
snapshot once and none before it twice: no gap and no repeat, whatever arrives meanwhile and
whichever worker it reconnects to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from execdist.domain.errors import ExecDistError
from execdist.infra import clients
from execdist.services.topic_scan import read_to_end
from execdist.settings import Settings

TIME_BUDGET_S = 60.0
"""How long reading a topic for a snapshot may take before the client is told to retry."""

Position = dict[int, int]


class SnapshotUnavailable(ExecDistError):
    """The topic could not be read in time; the client should retry."""


@dataclass(frozen=True)
class Snapshot:
    latest: list[bytes]
    """The last record of each order, as stored (JSON or Confluent-framed Avro)."""
    position: Position
    """Where live delivery goes on: per partition, the offset after what was read."""


def take_snapshot(settings: Settings, topic: str, partitions: int) -> Snapshot:
    """Read ``topic`` to its end and keep each order's last record (blocking)."""
    deadline = time.monotonic() + TIME_BUDGET_S
    consumer = clients.scan_consumer(settings, "snapshot")
    try:
        return _read(consumer, topic, partitions, deadline)
    except KafkaException as exc:
        raise SnapshotUnavailable(f"the broker did not answer the snapshot: {exc}") from exc
    finally:
        consumer.close()


def _read(consumer: Consumer, topic: str, partitions: int, deadline: float) -> Snapshot:
    position: Position = {}
    ends: dict[int, int] = {}
    assignment: list[TopicPartition] = []
    for partition in range(partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=max(deadline - time.monotonic(), 0.1)
        )
        position[partition] = high
        if low < high:
            ends[partition] = high
            assignment.append(TopicPartition(topic, partition, low))
    if not assignment:
        return Snapshot([], position)
    consumer.assign(assignment)
    latest: dict[bytes | None, tuple[int, int, bytes]] = {}
    read_to: Position = {tp.partition: tp.offset for tp in assignment}
    for message in read_to_end(consumer, ends, deadline):
        where, offset = message.partition(), message.offset()
        assert where is not None and offset is not None
        latest[message.key()] = (where, offset, message.value() or b"")
        read_to[where] = offset + 1
    if ends:
        raise SnapshotUnavailable(
            f"reading {topic} took longer than {TIME_BUDGET_S:.0f} s; retry later"
        )
    # live delivery goes on right after the last record read: not from the partition's end
    # as asked at the start (an open transaction's records may lie before it), nor from the
    # consumer's position (it has fetched records written after the start, which the scan
    # leaves to live delivery)
    position.update(read_to)
    return Snapshot([value for _, _, value in latest.values()], position)
