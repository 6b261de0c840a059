"""The same inputs through two revisions' workers: are the confirmations the same, field for
field? ``make bench-same BASE=<revision>``.

The engine may change how fast a confirmation comes out, never what it says. This feeds one
fixed set of inputs (the demo's order flows: trades, corrections, busts, amended orders; some
orders after their fills, each order's executions shuffled, every seventh one repeated) through
one real worker of the base revision and one of the working tree, each from nothing on the
same broker, as a backlog written before the worker starts, and compares what each wrote to
``execdist.confirmations`` and the join's status events on ``execdist.status`` (sequence
gaps, overfills, anomalies): every field but ``confirmed_at`` and a status event's ``time``
and worker, in the same order per order.

A run is over once a closing execution sent after everything else to each input partition is
confirmed: a worker takes a partition's records in order, so by then it has processed them all.
The base revision runs from a ``git worktree`` of it with this checkout's virtualenv, so it must
need no other dependencies (any revision since the engine's rewrite does not).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from bench.common import BROKER, PARTITIONS, ROOT, create_topics, reset_topics, say
from bench.pipeline import WorkerProcess
from execdist import topics
from execdist.demo import FeedRecord, order_flow

WALL_CLOCK_FIELDS = {"confirmed_at"}
"""Stamped by the worker when it confirms: differs between any two runs."""
STATUS_WALL_CLOCK_FIELDS = {"time", "source"}
"""When the worker emitted a status event, and which worker it was."""
SHOWN = 5
"""Orders whose differences are printed."""
JOIN_STATUS_TYPES = {"SEQUENCE_GAP", "OVERFILL", "ANOMALY"}
"""The status events the join emits; the others (worker reports, subscription changes) speak
of the run, not of its inputs."""


def inputs(orders: int, seed: int, amendments: bool = True) -> list[FeedRecord]:
    """The fixed input: ``orders`` demo order flows, made awkward in the ways that exercise the
    join (held fills, gaps filled late, repeats), in one order that both runs replay. Without
    ``amendments`` what is confirmed does not depend on how a partition's orders and
    executions interleave, only on each topic's own order."""
    rng = random.Random(seed)
    records: list[FeedRecord] = []
    repeat = 0
    for number in range(orders):
        flow = list(order_flow(rng, f"SAME-{number:05d}", allow_amend=amendments, fat_finger=0.02))
        order, rest = flow[0], flow[1:]
        executions = [r for r in rest if r.topic == topics.EXECUTIONS]
        amends = [r for r in rest if r.topic == topics.ORDERS]
        rng.shuffle(executions)
        with_repeats: list[FeedRecord] = []
        for record in executions:
            with_repeats.append(record)
            repeat += 1
            if repeat % 7 == 0:
                with_repeats.append(record)
        if rng.random() < 0.1:  # the order arrives after its fills
            records.extend([*with_repeats, order, *amends])
        else:
            records.extend([order, *with_repeats, *amends])
    return records


def closing_records(run: str) -> list[FeedRecord]:
    """An order and one fill for each input partition, sent last: its confirmation says the
    worker has processed everything before it there."""
    records: list[FeedRecord] = []
    for partition in range(PARTITIONS):
        number = 0
        while topics.key_partition(f"CLOSE-{run}-{partition}-{number}".encode(), PARTITIONS) != (
            partition
        ):
            number += 1
        order_id = f"CLOSE-{run}-{partition}-{number}"
        records.extend(list(order_flow(random.Random(partition), order_id, max_fills=1))[:2])
    return records


def produce(records: Iterable[FeedRecord], first_ms: int) -> None:
    """``records`` stamped ``first_ms``, ``first_ms + 1``, ...: the same timestamps in both
    runs (stamped as they are sent, two runs would differ in which records share a
    millisecond, and on equal timestamps an order goes before an execution)."""
    producer = Producer({"bootstrap.servers": BROKER, "enable.idempotence": True})
    for index, record in enumerate(records):
        partition = topics.key_partition(record.key, PARTITIONS)
        producer.produce(
            record.topic,
            record.value,
            record.key,
            partition=partition,
            timestamp=first_ms + index,
        )
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("the inputs were not all acknowledged within 60 s")


def read_topic(topic: str) -> list[dict[str, Any]]:
    """Every committed record of ``topic``, partition by partition, in offset order."""
    consumer = Consumer(
        {
            "bootstrap.servers": BROKER,
            "group.id": f"same-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        by_partition: dict[int, list[dict[str, Any]]] = {p: [] for p in partitions}
        at_end: set[int] = set()
        deadline = time.monotonic() + 60
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic} not read to its end in 60 s")
            message = consumer.poll(1)
            if message is None:
                continue
            error, partition = message.error(), message.partition()
            assert partition is not None
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(partition)
                    continue
                raise RuntimeError(f"reading {topic}: {error}")
            at_end.discard(partition)
            by_partition[partition].append(orjson.loads(message.value() or b"null"))
        return [value for p in partitions for value in by_partition[p]]
    finally:
        consumer.close()


def run_revision(
    source: Path, records: list[FeedRecord], first_ms: int, timeout: float
) -> dict[str, Any]:
    """One worker of the checkout at ``source``, from nothing, fed ``records`` stamped from
    ``first_ms`` on: what it wrote."""
    asyncio.run(reset_topics())
    asyncio.run(create_topics([topics.ORDERS, topics.EXECUTIONS]))
    run = uuid.uuid4().hex[:6]
    closing = closing_records(run)
    workdir = Path(tempfile.mkdtemp(prefix="execdist-same-"))
    worker = WorkerProcess(f"same-{run}", workdir, env={"PYTHONPATH": str(source)})
    try:
        # a backlog, as in the comparisons with Kafka Streams: written before the worker
        # starts, so its order of processing is the records' timestamps', whatever the timing
        produce([*records, *closing], first_ms)
        worker.start()
        started = time.monotonic()
        while not worker.ready():
            if not worker.alive():
                raise RuntimeError(f"the worker of {source} exited:\n{worker.log_tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the worker of {source} was not ready in {timeout:.0f} s")
            time.sleep(0.3)
        awaited = {
            orjson.loads(r.value)["exec_id"] for r in closing if r.topic == topics.EXECUTIONS
        }
        while True:
            confirmations = read_topic(topics.CONFIRMATIONS)
            if awaited <= {c.get("exec_id") for c in confirmations}:
                break
            if not worker.alive():
                raise RuntimeError(f"the worker of {source} exited:\n{worker.log_tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"the worker of {source} had not confirmed the closing executions in "
                    f"{timeout:.0f} s:\n{worker.log_tail()}"
                )
            time.sleep(2)
        closing_orders = {r.key.decode() for r in closing}
        return {
            "confirmations": [c for c in confirmations if c.get("order_id") not in closing_orders],
            "status": [
                s
                for s in read_topic(topics.STATUS)
                if s.get("type") in JOIN_STATUS_TYPES and _status_order(s) not in closing_orders
            ],
        }
    finally:
        worker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _status_order(event: dict[str, Any]) -> str:
    details = event.get("details")
    return str(details.get("order_id") if isinstance(details, dict) else None)


def _order(record: dict[str, Any]) -> str:
    return str(record["order_id"]) if "order_id" in record else _status_order(record)


def comparable(records: list[dict[str, Any]], wall_clock: set[str]) -> dict[str, list[bytes]]:
    """Each order's records without their wall-clock fields, in the order they came out."""
    by_order: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        kept = {k: v for k, v in record.items() if k not in wall_clock}
        by_order[_order(record)].append(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS))
    return dict(by_order)


def differences(base: dict[str, list[bytes]], new: dict[str, list[bytes]]) -> list[str]:
    """What differs between two runs' records, one text per order that differs."""
    found: list[str] = []
    for order_id in sorted(base.keys() | new.keys()):
        before, after = base.get(order_id, []), new.get(order_id, [])
        if before != after:
            found.append(
                f"{order_id}: base {len(before)} record(s), new {len(after)}\n"
                + "\n".join(
                    f"  base {b.decode() if b else '-'}\n  new  {a.decode() if a else '-'}"
                    for b, a in _paired(before, after)
                    if b != a
                )
            )
    return found


def _paired(before: list[bytes], after: list[bytes]) -> list[tuple[bytes, bytes]]:
    length = max(len(before), len(after))
    return [
        (before[i] if i < len(before) else b"", after[i] if i < len(after) else b"")
        for i in range(length)
    ]


def worktree(revision: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="execdist-base-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), revision],
        check=True,
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare the working tree with")
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--without-amendments",
        action="store_true",
        help="no order amendments: for a base revision that did not process a partition's "
        "orders and executions in timestamp order (before 7d28387), whose confirmations of "
        "an amended order depended on timing",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="FIELD",
        help="a top-level field to leave out of the comparison as well (repeatable), say "
        "event_id, which names the input record whose processing emitted a status event",
    )
    args = parser.parse_args()
    records = inputs(args.orders, args.seed, amendments=not args.without_amendments)
    first_ms = int(time.time() * 1000) - 3_600_000  # an hour's backlog, a millisecond apart
    say(
        f"{len(records):,} input records ({args.orders:,} orders); base {args.base}, "
        f"new: the working tree at {ROOT}"
    )
    base_tree = worktree(args.base)
    try:
        say(f"base revision {args.base}: one worker from nothing")
        base = run_revision(base_tree, records, first_ms, args.timeout)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
            check=False,
        )
    say("working tree: one worker from nothing")
    new = run_revision(ROOT, records, first_ms, args.timeout)
    failed = False
    ignored = set(args.ignore)
    aside = "wall-clock fields" + "".join(f", {field}" for field in sorted(ignored)) + " aside"
    for name, wall_clock in (
        ("confirmations", WALL_CLOCK_FIELDS),
        ("status", STATUS_WALL_CLOCK_FIELDS),
    ):
        count = len(base[name]), len(new[name])
        found = differences(
            comparable(base[name], wall_clock | ignored),
            comparable(new[name], wall_clock | ignored),
        )
        if found:
            failed = True
            say(
                f"{name}: NOT the same (base {count[0]:,}, new {count[1]:,}; {len(found):,} "
                f"orders differ, the first {min(len(found), SHOWN)} below; {aside}):"
            )
            for text in found[:SHOWN]:
                sys.stdout.write(text + "\n")
        else:
            say(
                f"{name}: the same, field for field and in order per order: {count[1]:,} "
                f"records ({aside})"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
