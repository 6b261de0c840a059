"""The load generator and the checker, each in a process of its own.

The generator is open-loop: event ``i`` of a run at rate R is due at ``t0 + i / R`` and carries
that intended send time in the execution's ``exec_time`` (microseconds), which the pipeline
copies into the confirmation. When the generator or the broker falls behind, the events go out
late but keep their intended stamp, so the delay counts as latency (no coordinated omission).
In burst mode (no rate) the generator sends as fast as it can, to build a backlog.

The checker is a ``read_committed`` consumer (librdkafka) of the output topics. It keeps every
exec_id it sees, so that it can count lost and duplicated records, and the latency of each
record from its stamp to its receipt.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bench.common import BROKER, percentile, rounded

CONTEXT = mp.get_context("spawn")


@dataclass(frozen=True)
class LoadSpec:
    """What one generator run sends."""

    run: str
    """Prefix of every order_id and exec_id of this run (tells its records from others)."""
    events: int
    """Executions to send."""
    rate: float | None
    """Executions per second, open-loop; None sends as fast as possible (a backlog)."""
    executions_topic: str = "executions"
    orders_topic: str | None = "orders"
    """Where each order goes before its first fill; None for the relay (executions only)."""
    fills_per_order: int = 4
    """Executions per order (partial fills of 25 each of an order of 100)."""
    accounts: int = 1
    """Orders are spread round-robin over ``ACC-0`` ... ``ACC-<accounts-1>``."""


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    first_stamp: float = 0.0
    last_stamp: float = 0.0
    max_behind_ms: float = 0.0
    """How far the generator itself fell behind its schedule at worst."""
    send_seconds: float = 0.0


def account_of(order_index: int, accounts: int) -> str:
    return f"ACC-{order_index % accounts}"


def stamp_text(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_record(spec: LoadSpec, order_index: int, stamp: str) -> tuple[bytes, bytes]:
    order_id = f"{spec.run}-{order_index:07d}"
    value = {
        "order_id": order_id,
        "account": account_of(order_index, spec.accounts),
        "symbol": "MSFT",
        "side": "BUY",
        "quantity": str(25 * spec.fills_per_order),
        "order_type": "LIMIT",
        "limit_price": "415.50",
        "currency": "USD",
        "version": 1,
        "event_time": stamp,
    }
    return order_id.encode(), orjson.dumps(value)


def execution_record(spec: LoadSpec, event: int, stamp: str) -> tuple[bytes, bytes]:
    order_index, fill = divmod(event, spec.fills_per_order)
    order_id = f"{spec.run}-{order_index:07d}"
    value = {
        "exec_id": f"{order_id}-{fill + 1}",
        "order_id": order_id,
        "seq": fill + 1,
        "exec_type": "TRADE",
        "ref_exec_id": None,
        "last_qty": "25",
        "last_px": "415.10",
        "venue": "XNAS",
        "exec_time": stamp,
    }
    return order_id.encode(), orjson.dumps(value)


def payload_size() -> int:
    """Bytes of one execution record's value, for the ceilings' record size."""
    return len(execution_record(LoadSpec(run="R0000000", events=1, rate=None), 0, stamp_text(0))[1])


async def generate(spec: LoadSpec) -> LoadResult:
    producer = AIOKafkaProducer(
        bootstrap_servers=BROKER,
        acks="all",
        enable_idempotence=True,
        linger_ms=1 if spec.rate else 20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    result = LoadResult()
    futures: list[asyncio.Future[Any]] = []
    t0 = time.time() + 0.05
    try:
        sent = 0
        while sent < spec.events:
            now = time.time()
            if spec.rate is None:
                due = min(spec.events, sent + 500)
            else:
                due = min(spec.events, int((now - t0) * spec.rate) + 1)
                if due <= sent:
                    await asyncio.sleep(t0 + sent / spec.rate - now)
                    continue
                behind = now - (t0 + sent / spec.rate)
                result.max_behind_ms = max(result.max_behind_ms, behind * 1000)
            for event in range(sent, due):
                stamp = now if spec.rate is None else t0 + event / spec.rate
                text = stamp_text(stamp)
                if event == sent and sent == 0:
                    result.first_stamp = stamp
                result.last_stamp = stamp
                if spec.orders_topic and event % spec.fills_per_order == 0:
                    key, value = order_record(spec, event // spec.fills_per_order, text)
                    futures.append(await producer.send(spec.orders_topic, value, key=key))
                key, value = execution_record(spec, event, text)
                futures.append(await producer.send(spec.executions_topic, value, key=key))
            sent = due
            if len(futures) > 20000:
                await asyncio.sleep(0)
                result.failed += _settle(futures)
        result.sent = sent
        await producer.flush()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        result.failed += sum(1 for o in outcomes if isinstance(o, BaseException))
        result.send_seconds = time.time() - t0
    finally:
        await producer.stop()
    return result


def _settle(futures: list[asyncio.Future[Any]]) -> int:
    """Drop acknowledged sends from the list; return how many of them failed."""
    failed = 0
    pending = []
    for future in futures:
        if not future.done():
            pending.append(future)
        elif future.exception() is not None:
            failed += 1
    futures[:] = pending
    return failed


def generator_main(spec: LoadSpec, results: mp.Queue[Any]) -> None:
    results.put(("load", asyncio.run(generate(spec))))


@dataclass
class CheckSpec:
    run: str
    topics: list[str]
    partitions: int = 1
    """Partitions of each topic read."""
    batch_reads: bool = False
    """Read as a batch downstream does (a fetch waits for 1 MiB or 200 ms) rather than as a
    screen does (a fetch returns with the first record). With 1,000 topics each fetch names
    every partition (librdkafka has no incremental fetch sessions), so a screen's fetches, about
    one per commit, are much of the broker's work; `make bench-broker-profile` compares the two.
    The pipeline bench reads as a screen does throughout."""


@dataclass
class CheckResult:
    delivered: int = 0
    unique: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    steady_eps: float | None = None
    """Arrival rate between the 10th and 90th percentile of arrivals."""
    first_arrival: float = 0.0
    last_arrival: float = 0.0

    def summary(self, sent: int) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "delivered": self.delivered,
            "lost": max(sent - self.unique, 0),
            "duplicates": self.delivered - self.unique,
            "mean_ms": rounded(sum(ordered) / len(ordered) if ordered else None),
            "p50_ms": rounded(percentile(ordered, 0.50)),
            "p99_ms": rounded(percentile(ordered, 0.99)),
            "p999_ms": rounded(percentile(ordered, 0.999)),
            "max_ms": rounded(ordered[-1] if ordered else None),
        }


def check(
    spec: CheckSpec,
    ready: Any,
    expected: Synchronized[int],
    stop_at: Synchronized[float],
    received: Synchronized[int],
    loaded_at: Synchronized[float],
) -> CheckResult:
    """Read the output topics from their ends until every expected exec_id is there.

    A librdkafka consumer, as a downstream system would run: its fetch loop is C, so reading
    the 1,000 topics of a 1,000-subscription run costs it little more than one, and it takes
    little CPU from the system under test on this shared machine. (An aiokafka checker took a
    Python pass over every partition of every fetch response: with 1,000 topics that added
    tens of milliseconds to each record and competed with the worker for the cores.)
    """
    consumer = Consumer(
        {
            "bootstrap.servers": BROKER,
            "group.id": f"bench-check-{spec.run}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 200 if spec.batch_reads else 20,
            "fetch.min.bytes": 1024 * 1024 if spec.batch_reads else 1,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
            "log_level": 3,
        }
    )
    result = CheckResult()
    seen: set[bytes] = set()
    arrivals: list[float] = []
    prefix = spec.run.encode()
    try:
        tps = []
        for topic in spec.topics:
            for partition in range(spec.partitions):
                end = _end_offset(consumer, TopicPartition(topic, partition))
                tps.append(TopicPartition(topic, partition, end))
        consumer.assign(tps)
        ready.set()
        while True:
            # consume() waits for all it asks for: wait for the first record, then take
            # what is fetched already
            first = consumer.poll(0.05)
            messages = [] if first is None else [first, *consumer.consume(20000, 0)]
            now = time.time()
            for message in messages:
                if message.error() is not None:
                    continue
                key, raw = message.key(), message.value()
                if key is None or raw is None or not key.startswith(prefix):
                    continue  # another run's record, or a tombstone: nothing to count
                value = orjson.loads(raw)
                exec_id = value["exec_id"].encode()
                result.delivered += 1
                arrivals.append(now)
                if exec_id in seen:
                    continue
                seen.add(exec_id)
                stamp = datetime.fromisoformat(value["exec_time"]).timestamp()
                result.latencies_ms.append((now - stamp) * 1000)
            received.value = len(seen)
            target = expected.value
            if target >= 0 and len(seen) >= target:
                break
            if stop_at.value and now >= stop_at.value:
                break
    finally:
        consumer.close()
    result.unique = len(seen)
    if arrivals:
        result.first_arrival, result.last_arrival = arrivals[0], arrivals[-1]
        result.steady_eps = steady_rate(arrivals, loaded_at.value)
    return result


_NOT_READY = (
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
)
"""What the broker answers about a topic created a moment ago, until its leader is elected."""


def _end_offset(consumer: Consumer, tp: TopicPartition, timeout_s: float = 30.0) -> int:
    """The partition's end offset, asked again while the partition is not ready yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, end = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            return int(end)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            not_ready = isinstance(error, KafkaError) and error.code() in _NOT_READY
            if not not_ready or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def steady_rate(arrivals: list[float], loaded_at: float) -> float | None:
    """Records per second that the system under test delivered, robust to arrivals in clumps
    (one clump per committed transaction).

    When many records arrived after the generator had sent everything, the system was
    draining a backlog: the rate is the records that arrived after the generator finished (or
    after the first arrival, for a system started only then) over the time until the last one.
    Otherwise it kept up, and the rate is the records that arrived while the generator was
    sending over that time.
    """
    if not arrivals:
        return None
    first, last = arrivals[0], arrivals[-1]
    if not loaded_at:
        loaded_at = last
    start = max(loaded_at, first)
    after = sum(1 for a in arrivals if a > start)
    if after >= max(100, 0.3 * len(arrivals)) and last > start:
        return after / (last - start)
    before = sum(1 for a in arrivals if a <= loaded_at)
    if before > 1 and loaded_at > first:
        return before / (loaded_at - first)
    return None


def checker_main(
    spec: CheckSpec,
    ready: Any,
    expected: Synchronized[int],
    stop_at: Synchronized[float],
    received: Synchronized[int],
    loaded_at: Synchronized[float],
    results: mp.Queue[Any],
) -> None:
    outcome = check(spec, ready, expected, stop_at, received, loaded_at)
    results.put(("check", outcome))


@dataclass
class Measurement:
    load: LoadResult
    check: CheckResult
    complete: bool
    """Every sent record arrived before the deadline."""

    @property
    def throughput_eps(self) -> float | None:
        """Delivered records per second: the steady arrival rate (see :func:`steady_rate`),
        the offered rate when the system keeps up, its capacity when it does not."""
        if self.check.steady_eps is not None:
            return self.check.steady_eps
        span = self.check.last_arrival - self.load.first_stamp
        if not self.check.unique or span <= 0:
            return None
        return self.check.unique / span

    def summary(self) -> dict[str, Any]:
        return {
            **self.check.summary(self.load.sent),
            "sent": self.load.sent,
            "throughput_eps": rounded(self.throughput_eps, 1),
            "generator_behind_ms": rounded(self.load.max_behind_ms),
        }


def measure(
    load: LoadSpec,
    check_spec: CheckSpec,
    *,
    timeout_s: float,
    grace_s: float,
    label: str,
    alive: Any = None,
    on_loaded: Any = None,
    stall_s: float | None = None,
    max_s: float | None = None,
) -> Measurement:
    """Start the checker, run the generator, wait until every record arrived (or the deadline).

    ``timeout_s`` bounds the whole measurement; ``grace_s`` is how long the checker waits for
    the last records once the generator is done. With ``stall_s``, both are put off for as
    long as records keep arriving, up to ``max_s`` in all: a drain slower than expected (one
    whose transaction the broker timed out and the worker redid, say) is then measured to its
    end instead of stopped half-way; only ``stall_s`` without a record ends it early.
    ``alive`` (optional) returns False when the system under test has died, which ends the
    wait early. ``on_loaded`` (optional) is called once everything is sent (to start a
    system against a preloaded backlog).
    """
    from bench.common import say

    results: mp.Queue[Any] = CONTEXT.Queue()
    ready = CONTEXT.Event()
    expected = CONTEXT.Value("q", -1)
    stop_at = CONTEXT.Value("d", 0.0)
    received = CONTEXT.Value("q", 0)
    loaded_at = CONTEXT.Value("d", 0.0)
    started = time.time()
    deadline = started + timeout_s
    checker = CONTEXT.Process(
        target=checker_main,
        args=(check_spec, ready, expected, stop_at, received, loaded_at, results),
        daemon=True,
    )
    checker.start()
    if not ready.wait(60):
        checker.kill()
        raise RuntimeError("the checker did not get its partitions within 60 s")
    generator = CONTEXT.Process(target=generator_main, args=(load, results), daemon=True)
    generator.start()
    got: dict[str, Any] = {}
    last_report = time.time()
    hard_deadline = started + (max_s if max_s is not None else timeout_s)
    progress, progress_at = 0, started
    while "check" not in got:
        try:
            kind, value = results.get(timeout=0.5)
            got[kind] = value
            if kind == "load":
                loaded_at.value = time.time()
                if on_loaded is not None:
                    on_loaded()
                expected.value = value.sent
                stop_at.value = min(deadline, time.time() + grace_s)
        except queue.Empty:
            pass
        now = time.time()
        if stall_s is not None:
            if received.value > progress:
                progress, progress_at = received.value, now
            # still arriving: wait on, while records keep coming and up to max_s
            later = min(progress_at + stall_s, hard_deadline)
            deadline = max(deadline, later)
            if stop_at.value and stop_at.value < later and (alive is None or alive()):
                stop_at.value = later
        if not stop_at.value and now > deadline:
            stop_at.value = now
        if alive is not None and not alive() and not stop_at.value:
            say(f"{label}: the system under test died; stopping the measurement")
            stop_at.value = now + 2
        if now - last_report >= 5:
            last_report = now
            say(f"{label}: {received.value}/{load.events} arrived after {now - started:.0f}s")
        if not checker.is_alive() and "check" not in got and results.empty():
            raise RuntimeError("the checker process died")
    if "load" not in got:
        try:
            got["load"] = results.get(timeout=30)[1]
        except queue.Empty:
            generator.kill()
            got["load"] = LoadResult()
    generator.join(10)
    measurement = Measurement(got["load"], got["check"], False)
    measurement.complete = got["check"].unique >= got["load"].sent > 0
    return measurement
