"""Reconcile: the count and SHA-256 of a subscription's records in a ``sub_seq`` range.

A downstream proves it holds what the subscription's topic holds by computing the same digest
over what it received: for each record with ``from_seq`` <= ``sub_seq`` <= ``to_seq``, in
``sub_seq`` order, the value's length as 4 bytes big-endian, then the value's bytes exactly as
stored on the topic (the contract's definition).

The topic is read ``read_committed`` from its beginning to its end as it was when the request
came (:mod:`.topic_scan`, as the dry-run reads); only the ``execdist.sub_seq``
header of a record outside the range is looked at. The answer also gives the highest
``sub_seq`` on the topic, so a client can tell a range not written yet from a missing record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from execdist.infra import clients
from execdist.services.topic_scan import header_sub_seq, read_to_end
from execdist.settings import Settings

log = logging.getLogger(__name__)

MAX_RANGE = 100_000
"""Records one request may cover; a longer range is asked for in parts."""
TIME_BUDGET_S = 20.0
"""How long a scan may take before the request fails with 503 (retry, or narrow nothing: the
whole topic up to the range's end is read)."""
CONCURRENT_SCANS = 1
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Reconciliation:
    from_seq: int
    to_seq: int
    count: int
    sha256: str
    last_sub_seq: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "count": self.count,
            "sha256": self.sha256,
            "last_sub_seq": self.last_sub_seq,
        }


class ReconcileUnavailable(Exception):
    """The broker did not answer, or the scan did not end in time; worth retrying."""


def digest(values: list[bytes]) -> str:
    """The contract's SHA-256 over ``values`` (already in ``sub_seq`` order)."""
    sha = hashlib.sha256()
    for value in values:
        sha.update(_LENGTH.pack(len(value)))
        sha.update(value)
    return sha.hexdigest()


class Reconciler:
    """Answers reconcile requests for one worker, one scan at a time."""

    def __init__(self, settings: Settings, time_budget_s: float = TIME_BUDGET_S) -> None:
        self._settings = settings
        self._time_budget_s = time_budget_s
        self._turns = asyncio.Semaphore(CONCURRENT_SCANS)

    async def run(self, topic: str, from_seq: int, to_seq: int) -> Reconciliation:
        async with self._turns:
            return await asyncio.to_thread(
                reconcile,
                self._settings,
                topic,
                from_seq,
                to_seq,
                time.monotonic() + self._time_budget_s,
            )


def reconcile(
    settings: Settings, topic: str, from_seq: int, to_seq: int, deadline: float
) -> Reconciliation:
    """The blocking scan; ``deadline`` is a ``time.monotonic()`` value."""
    consumer = clients.scan_consumer(settings, "reconcile")
    try:
        in_range, last = _scan(consumer, topic, from_seq, to_seq, deadline)
    except KafkaException as exc:
        raise ReconcileUnavailable(f"the broker did not answer the scan: {exc}") from exc
    finally:
        consumer.close()
    values = [in_range[seq] for seq in sorted(in_range)]
    return Reconciliation(from_seq, to_seq, len(values), digest(values), last)


def _scan(
    consumer: Consumer, topic: str, from_seq: int, to_seq: int, deadline: float
) -> tuple[dict[int, bytes], int | None]:
    ends = _start(consumer, topic, deadline)
    in_range: dict[int, bytes] = {}
    last: int | None = None
    for message in read_to_end(consumer, ends, deadline):
        sub_seq = header_sub_seq(message.headers())
        if sub_seq is None:
            continue
        last = sub_seq if last is None else max(last, sub_seq)
        if from_seq <= sub_seq <= to_seq:
            in_range[sub_seq] = message.value() or b""
    if ends:
        raise ReconcileUnavailable(
            f"reading {topic} took longer than {TIME_BUDGET_S:.0f} s; retry later"
        )
    return in_range, last


def _start(consumer: Consumer, topic: str, deadline: float) -> dict[int, int]:
    """Assign every partition of ``topic`` from its beginning; returns partition -> its end
    offset at this moment."""
    timeout = max(deadline - time.monotonic(), 0.1)
    described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if described is None or described.error is not None:
        return {}
    ends: dict[int, int] = {}
    assignment: list[TopicPartition] = []
    for partition in sorted(described.partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=max(deadline - time.monotonic(), 0.1)
        )
        if low < high:
            ends[partition] = high
            assignment.append(TopicPartition(topic, partition, low))
    if assignment:
        consumer.assign(assignment)
    return ends
