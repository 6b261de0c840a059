"""The reliability verifier: a seeded feed, a paced idempotent producer with a fault schedule,
and a read_committed checker of the outputs.

It works like Kafka's own system-test verifiers: every input has an id known in advance
(``order_flow`` is deterministic for a seed, and the pure core says which confirmations must come
out), faults fire at fixed fractions of the stream, and afterwards every output topic is read
back in full, with ``read_committed``, and compared with what was expected:

- **lost**: an expected confirmation (exec_id) that never became visible;
- **duplicated**: a confirmation visible more than once;
- **out of order**: within one order, a confirmation whose seq is lower than one seen before it;
- **aborted reads**: a confirmation a reader was handed that was never committed (checked for
  relay clients; the log's aborted records are counted too, as a measure of how much the faults
  made the workers abort);
- **recovery time**: after each fault, how long the output partition that stalled longest took
  to deliver again.

Rates and sizes come from ``EXECDIST_REL_RECORDS`` (at least 30,000 inputs by default) and
``EXECDIST_REL_RATE`` (records per second), so a faster pipeline can be driven harder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from execdist import topics
from execdist.demo import FeedRecord, order_flow
from tests.integration.conftest import BROKER
from tests.integration.expectations import expected_confirmations

RECORDS = int(os.environ.get("EXECDIST_REL_RECORDS", "30000"))
"""Inputs (orders and executions) per scenario."""
RATE = float(os.environ.get("EXECDIST_REL_RATE", "400"))
"""Inputs per second; the stream of a scenario lasts RECORDS / RATE seconds."""
DRAIN_TIMEOUT_S = float(os.environ.get("EXECDIST_REL_DRAIN_S", "240"))
"""How long the checker waits, after the last input, for the outputs to be complete."""
STALL_S = 1.0
"""An output partition silent for longer than this after a fault has stalled."""


def log(message: str) -> None:
    """Scenario schedule and results go to the test output (pytest -s or the report)."""
    print(f"[reliability {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Feed:
    """A deterministic stream of orders and executions and the confirmations it must produce."""

    records: list[FeedRecord]
    expected: dict[str, list[dict[str, object]]]

    @classmethod
    def seeded(cls, prefix: str, seed: int, records: int = RECORDS) -> Feed:
        rng = random.Random(seed)
        out: list[FeedRecord] = []
        number = 0
        while len(out) < records:
            out.extend(order_flow(rng, f"{prefix}-{number:06d}", allow_amend=False))
            number += 1
        return cls(out, expected_confirmations(out))

    @property
    def exec_ids(self) -> list[str]:
        return [str(c["exec_id"]) for items in self.expected.values() for c in items]

    def matching(self, keep: Callable[[dict[str, object]], bool]) -> dict[str, list[str]]:
        """Per order, the exec_ids a subscription with filter ``keep`` must get, in seq order."""
        result: dict[str, list[str]] = {}
        for order_id, items in self.expected.items():
            kept = [str(c["exec_id"]) for c in items if keep(c)]
            if kept:
                result[order_id] = kept
        return result

    def final_state(self, order_id: str) -> dict[str, object]:
        return self.expected[order_id][-1]


@dataclass(frozen=True)
class Fault:
    """Something done to the system when ``at`` (a fraction) of the stream has been sent."""

    at: float
    name: str
    action: Callable[[], Awaitable[None]]


@dataclass
class Schedule:
    """When each fault fired, on the scenario's clock (monotonic seconds), and other events
    worth logging (a client's reconnect, the end of the stream), which are not faults."""

    started: float = field(default_factory=time.monotonic)
    fired: list[tuple[str, float]] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)
    stream_ended: float = 0.0

    def mark(self, name: str, fault: bool = True) -> float:
        now = time.monotonic()
        (self.fired if fault else self.events).append((name, now))
        log(f"t={now - self.started:6.1f}s  {name}")
        return now


async def stream(
    feed: Feed,
    faults: Iterable[Fault] = (),
    rate: float = RATE,
    schedule: Schedule | None = None,
    between: Callable[[int], Awaitable[None]] | None = None,
) -> Schedule:
    """Send the feed at ``rate`` records/s with an idempotent producer, firing the faults on
    schedule (each in a task of its own, so the stream does not wait for a restart)."""
    schedule = schedule or Schedule()
    pending = sorted(faults, key=lambda f: f.at)
    tasks: list[asyncio.Task[None]] = []
    producer = AIOKafkaProducer(
        bootstrap_servers=BROKER, enable_idempotence=True, linger_ms=5, acks="all"
    )
    await producer.start()
    total = len(feed.records)
    tick = 0.05
    per_tick = max(int(rate * tick), 1)
    log(f"stream: {total} inputs at {rate:.0f}/s, faults at {[f.at for f in pending]}")
    try:
        next_tick = time.monotonic()
        for start in range(0, total, per_tick):
            while pending and start >= pending[0].at * total:
                fault = pending.pop(0)
                schedule.mark(f"{fault.at:.0%} of the stream: {fault.name}")
                tasks.append(asyncio.create_task(fault.action()))
            for record in feed.records[start : start + per_tick]:
                await producer.send(record.topic, record.value, key=record.key)
            if between is not None:
                await between(start)
            next_tick += tick
            await asyncio.sleep(max(next_tick - time.monotonic(), 0))
        await producer.flush()
    finally:
        await producer.stop()
    schedule.stream_ended = schedule.mark("stream: last input sent", fault=False)
    for task in tasks:
        await task
    return schedule


@dataclass(frozen=True)
class Seen:
    topic: str
    partition: int
    offset: int
    exec_id: str
    order_id: str
    seq: int
    arrived: float
    sub_seq: int | None = None
    """A subscriber record's number (``None`` on ``execdist.confirmations``)."""


class OutputTail:
    """A read_committed consumer that follows the output topics from their start while the
    scenario runs, noting when each record became visible."""

    def __init__(self, topic_names: list[str]) -> None:
        self.topics = topic_names
        self.records: list[Seen] = []
        self.per_topic: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> OutputTail:
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=BROKER,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
            metadata_max_age_ms=1000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for tp, messages in batch.items():
                for message in messages:
                    body = orjson.loads(message.value)
                    self.records.append(
                        Seen(
                            tp.topic,
                            tp.partition,
                            message.offset,
                            str(body["exec_id"]),
                            str(body["order_id"]),
                            int(body["seq"]),
                            now,
                            None if body.get("sub_seq") is None else int(body["sub_seq"]),
                        )
                    )
                    self.per_topic[tp.topic] += 1

    async def wait_for(self, counts: dict[str, int], timeout: float, settle: float = 3.0) -> float:
        """Wait until each topic has at least its count (then ``settle`` s longer, so that a
        duplicate has the time to show); returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if all(self.per_topic[t] >= n for t, n in counts.items()):
                await asyncio.sleep(settle)
                break
            await asyncio.sleep(0.25)
        return time.monotonic() - started

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def of(self, topic: str) -> list[Seen]:
        return [r for r in self.records if r.topic == topic]


async def aborted_records(topic_names: list[str], committed: Iterable[Seen]) -> int:
    """Records in the log that read_committed never showed: what aborted transactions wrote."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BROKER,
        isolation_level="read_uncommitted",
        enable_auto_commit=False,
        group_id=None,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()
    try:
        described = await admin.describe_topics(topic_names)
    finally:
        await admin.close()
    tps = [
        TopicPartition(item["topic"], p["partition"])
        for item in described
        for p in item["partitions"]
    ]
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        offsets: set[tuple[str, int, int]] = set()

        async def behind() -> bool:
            for tp in tps:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                offsets.update((tp.topic, tp.partition, m.offset) for m in messages)
    finally:
        await consumer.stop()
    visible = {(r.topic, r.partition, r.offset) for r in committed}
    return len(offsets - visible)


@dataclass
class TopicReport:
    topic: str
    expected: int
    seen: int
    lost: int
    duplicated: int
    out_of_order: int
    unexpected: int
    lost_by_partition: dict[int, int] = field(default_factory=dict)
    """Lost confirmations per partition (where the input's key lands): one stuck partition
    looks different from records lost here and there."""
    sub_seq_faults: int = 0
    """On a subscriber topic: sub_seq numbers missing from 1..n, repeated, or absent."""

    @property
    def clean(self) -> bool:
        return (
            not (self.lost or self.duplicated or self.out_of_order or self.unexpected)
            and not self.sub_seq_faults
        )


def partition_of(key: str, partitions: int) -> int:
    """The partition the Java client's default partitioner (and aiokafka's) gives a key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def check_topic(
    topic: str, expected: dict[str, list[str]], seen: list[Seen], partitions: int = 4
) -> TopicReport:
    """Compare what a topic holds (in offset order per partition) with what it must hold."""
    wanted = {exec_id for ids in expected.values() for exec_id in ids}
    counts = Counter(r.exec_id for r in seen)
    ordered = sorted(seen, key=lambda r: (r.partition, r.offset))
    last_seq: dict[str, int] = {}
    out_of_order = 0
    for record in ordered:
        if record.seq < last_seq.get(record.order_id, 0):
            out_of_order += 1
        last_seq[record.order_id] = max(record.seq, last_seq.get(record.order_id, 0))
    order_of = {exec_id: order_id for order_id, ids in expected.items() for exec_id in ids}
    lost_by_partition = Counter(
        partition_of(order_of[exec_id], partitions) for exec_id in wanted - set(counts)
    )
    return TopicReport(
        topic=topic,
        expected=len(wanted),
        seen=len(seen),
        lost=len(wanted - set(counts)),
        lost_by_partition=dict(sorted(lost_by_partition.items())),
        duplicated=sum(n - 1 for n in counts.values() if n > 1),
        out_of_order=out_of_order,
        unexpected=len(set(counts) - wanted),
        sub_seq_faults=sub_seq_faults(seen) if topic.startswith(topics.SUBSCRIBER_PREFIX) else 0,
    )


def sub_seq_faults(seen: list[Seen]) -> int:
    """How far a subscriber topic's numbers are from 1, 2, 3 ... n, each once."""
    numbers = [r.sub_seq for r in seen]
    missing_number = sum(1 for n in numbers if n is None)
    present = [n for n in numbers if n is not None]
    counts = Counter(present)
    repeated = sum(c - 1 for c in counts.values() if c > 1)
    gaps = (max(present) - len(counts)) if present else 0
    return missing_number + repeated + gaps


def recovery_times(tail: OutputTail, topic: str, schedule: Schedule) -> list[float]:
    """Per fault: seconds from the fault until the output partition that stalled longest
    delivered again (0.0 when no partition stalled longer than ``STALL_S``)."""
    arrivals: dict[int, list[float]] = defaultdict(list)
    for record in tail.of(topic):
        arrivals[record.partition].append(record.arrived)
    result = []
    marks = [t for _, t in schedule.fired]
    for index, fault_at in enumerate(marks):
        window_end = marks[index + 1] if index + 1 < len(marks) else float("inf")
        worst = 0.0
        for times in arrivals.values():
            times = sorted(times)
            before = [t for t in times if t <= fault_at]
            after = [t for t in times if fault_at < t]
            if not after:
                continue
            previous = before[-1] if before else fault_at
            # the first silence longer than STALL_S that begins around the fault
            for t in after:
                if t > window_end:
                    break
                if t - previous > STALL_S and previous >= fault_at - STALL_S:
                    worst = max(worst, t - fault_at)
                    break
                previous = t
        result.append(round(worst, 1))
    return result


@dataclass
class Verdict:
    """The outcome of one scenario, as one line of the closing table."""

    scenario: str
    inputs: int
    faults: int
    reports: list[TopicReport]
    aborted: int
    recovery_s: list[float]
    drain_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.reports)

    @property
    def duplicated(self) -> int:
        return sum(r.duplicated for r in self.reports)

    @property
    def out_of_order(self) -> int:
        return sum(r.out_of_order for r in self.reports)

    @property
    def checked(self) -> int:
        return sum(r.seen for r in self.reports)

    def summary(self) -> str:
        lines = [
            f"RESULT {self.scenario}: inputs={self.inputs} checked={self.checked} "
            f"faults={self.faults} lost={self.lost} duplicated={self.duplicated} "
            f"out_of_order={self.out_of_order} aborted_in_log={self.aborted} "
            f"recovery_s={self.recovery_s} drain_s={self.drain_s:.1f}"
        ]
        for r in self.reports:
            lines.append(
                f"  {r.topic}: expected {r.expected}, seen {r.seen}, lost {r.lost}, "
                f"duplicated {r.duplicated}, out of order {r.out_of_order}, "
                f"unexpected {r.unexpected}"
                + (f", sub_seq faults {r.sub_seq_faults}" if r.sub_seq_faults else "")
                + (f", lost per partition {r.lost_by_partition}" if r.lost else "")
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def record(self) -> None:
        """Log the summary and append it to the run's results file (for the closing table)."""
        text = self.summary()
        log(text)
        path = os.environ.get("EXECDIST_REL_RESULTS")
        if path:
            with open(path, "a") as out:
                out.write(text + "\n")

    def assert_clean(self) -> None:
        assert (self.lost, self.duplicated, self.out_of_order) == (0, 0, 0), self.summary()
        assert all(r.unexpected == 0 for r in self.reports), self.summary()
        assert all(r.sub_seq_faults == 0 for r in self.reports), self.summary()


async def verify(
    scenario: str,
    feed: Feed,
    tail: OutputTail,
    schedule: Schedule,
    subscriptions: dict[str, dict[str, list[str]]] | None = None,
    timeout: float = DRAIN_TIMEOUT_S,
) -> Verdict:
    """Wait for the outputs to be complete (or the timeout), then check every output topic."""
    expected_by_topic = {
        topics.CONFIRMATIONS: {
            o: [str(c["exec_id"]) for c in items] for o, items in feed.expected.items()
        }
    }
    expected_by_topic.update(subscriptions or {})
    counts = {t: sum(len(v) for v in e.values()) for t, e in expected_by_topic.items()}
    drain_s = await tail.wait_for(counts, timeout)
    await tail.stop()
    reports = [check_topic(t, e, tail.of(t)) for t, e in expected_by_topic.items()]
    aborted = await aborted_records(list(expected_by_topic), tail.records)
    verdict = Verdict(
        scenario=scenario,
        inputs=len(feed.records),
        faults=len(schedule.fired),
        reports=reports,
        aborted=aborted,
        recovery_s=recovery_times(tail, topics.CONFIRMATIONS, schedule),
        drain_s=drain_s,
    )
    return verdict
