"""Dry-run of a filter: what it would have matched on ``execdist.confirmations`` since a time.

For each partition the scan starts at the first record written at or after ``since``
(``offsets_for_times``) and ends at the partition's end as it was when the scan began, reading
``read_committed`` like a subscriber does. It stops early after ``max_records`` records or when
the time budget is spent, and says which. Matching is the router's own
(:class:`~execdist.domain.routing.FilterTrial`).

The reader is a librdkafka consumer run in a thread: a scan decodes up to a million records,
which must not hold the event loop that serves the other requests and the relay. At most
:data:`CONCURRENT_SCANS` scans run at once per worker; further requests wait their turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from execdist import topics
from execdist.domain.model import Confirmation
from execdist.domain.routing import FilterTrial
from execdist.domain.subscriptions import DryRunRequest
from execdist.infra import clients
from execdist.services.topic_scan import read_to_end
from execdist.settings import Settings

log = logging.getLogger(__name__)

TIME_BUDGET_S = 5.0
"""How long a scan may take, its set-up included; the answer then says ``time_budget``.
Measured: about 60,000 confirmations a second (decoding dominates), so some 300,000 fit."""
CONCURRENT_SCANS = 1


@dataclass(frozen=True, slots=True)
class DryRunResult:
    matched: int
    scanned: int
    stopped_by: str | None
    """``max_records``, ``time_budget``, or ``None`` when everything since ``since`` was read."""
    evaluation_errors: int
    sample: list[dict[str, object]]

    def to_dict(self) -> dict[str, object]:
        return {
            "matched": self.matched,
            "scanned": self.scanned,
            "truncated": self.stopped_by is not None,
            "stopped_by": self.stopped_by,
            "evaluation_errors": self.evaluation_errors,
            "sample": self.sample,
        }


class ScanUnavailable(Exception):
    """The broker did not answer the scan's set-up in time; worth retrying."""


class FilterDryRun:
    """Runs dry-runs for one worker, one scan at a time."""

    def __init__(self, settings: Settings, time_budget_s: float = TIME_BUDGET_S) -> None:
        self._settings = settings
        self._time_budget_s = time_budget_s
        self._turns = asyncio.Semaphore(CONCURRENT_SCANS)

    async def run(self, request: DryRunRequest) -> DryRunResult:
        async with self._turns:
            return await asyncio.to_thread(
                scan, self._settings, request, time.monotonic() + self._time_budget_s
            )


def scan(settings: Settings, request: DryRunRequest, deadline: float) -> DryRunResult:
    """The blocking scan; ``deadline`` is a ``time.monotonic()`` value."""
    consumer = clients.scan_consumer(settings, "dry-run")
    try:
        return _scan(consumer, request, deadline)
    except KafkaException as exc:
        raise ScanUnavailable(f"the broker did not answer the scan: {exc}") from exc
    finally:
        consumer.close()


def _scan(consumer: Consumer, request: DryRunRequest, deadline: float) -> DryRunResult:
    trial = FilterTrial(request.filter)
    ends = _start(consumer, request, deadline)
    stopped_by: str | None = None
    for message in read_to_end(consumer, ends, deadline):
        if trial.scanned >= request.max_records:
            stopped_by = "max_records"
            break
        _count(trial, message)
    if stopped_by is None and ends:
        stopped_by = "max_records" if trial.scanned >= request.max_records else "time_budget"
    return DryRunResult(
        trial.matched, trial.scanned, stopped_by, trial.evaluation_errors, trial.sample
    )


def _start(consumer: Consumer, request: DryRunRequest, deadline: float) -> dict[int, int]:
    """Assign every partition that has records since ``since``; returns partition -> the end
    offset at this moment (records written later are not scanned)."""
    topic = topics.CONFIRMATIONS
    timeout = max(deadline - time.monotonic(), 0.1)
    metadata = consumer.list_topics(topic, timeout=timeout)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        return {}  # nothing was ever confirmed here
    partitions = sorted(described.partitions)
    # -1 and -2 mean "latest" and "earliest" to offsets_for_times: clamp to the epoch
    since_ms = max(int(request.since.timestamp() * 1000), 0)
    starts = consumer.offsets_for_times(
        [TopicPartition(topic, p, since_ms) for p in partitions],
        timeout=max(deadline - time.monotonic(), 0.1),
    )
    ends: dict[int, int] = {}
    assignment: list[TopicPartition] = []
    for start in starts:
        if start.offset < 0:
            continue  # no record at or after since
        _, high = consumer.get_watermark_offsets(
            TopicPartition(topic, start.partition), timeout=max(deadline - time.monotonic(), 0.1)
        )
        if start.offset < high:
            ends[start.partition] = high
            assignment.append(TopicPartition(topic, start.partition, start.offset))
    if assignment:
        consumer.assign(assignment)
    return ends


def _count(trial: FilterTrial, message: Message) -> None:
    value = message.value()
    try:
        published = orjson.loads(value) if value is not None else None
        if not isinstance(published, dict):
            raise TypeError("not a JSON object")
        confirmation = Confirmation.from_dict(published)
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
        # not written by this service's join; counted as scanned, never as a match
        log.warning(
            "dry-run: %s[%s]@%s is not a confirmation: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            exc,
        )
        trial.scanned += 1
        return
    trial.add(confirmation, published)
