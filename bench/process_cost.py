"""The processors' own CPU per execution, without Kafka: ``python -m bench.process_cost``.

Feeds the bench's load (an order, then its fills, as ``bench.load`` writes them) straight into
the join, the subscription router and the sequencer, with the transaction replaced by a
recorder and each batch committed to real RocksDB tables as the engine's committer would,
with the delivery figures and analytics that follow each commit (what the sequencer routes to
itself is handed back to it, as one worker owning every partition reads it back). What it
measures is the Python work the engine does per execution on the event loop, apart from the
Kafka client: the part this project's code decides. ``--profile`` prints the functions that
take the time (cProfile, sorted by own time).

Repeatable to a few percent on an idle core, so it is the figure to compare before and after a
change to the hot path; the pipeline bench then says what the change is worth end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import instructions
from bench.load import LoadSpec, execution_record, order_record, stamp_text
from execdist import topics
from execdist.agents.anomalies import AnomalyFlags
from execdist.agents.backfill import SubscriptionBackfill
from execdist.agents.join import JoinProcessor
from execdist.agents.positions import PositionsProcessor
from execdist.agents.routing import SubscriptionRouter
from execdist.agents.sequencing import SubscriberSequencer
from execdist.agents.subscriber_output import SubscriberOutput
from execdist.cli import tune_garbage_collector
from execdist.codecs.input import InputDecoder
from execdist.domain.delivery import DeliveryStats
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import CreateRequest, Filter, OutputFormat, new_subscription
from execdist.metrics import Metrics
from execdist.runtime.commit import Committer
from execdist.runtime.records import InputRecord
from execdist.services.analytics import Analytics
from execdist.settings import Settings
from execdist.tables.declarations import (
    ANOMALY_STATS,
    HISTORY,
    ORDER_STATE,
    POSITIONS,
    SUB_SEQ,
    TIMERS,
    table_specs,
)
from execdist.tables.store import PartitionedState, RocksTables

PARTITIONS = 4
BATCH = 200
"""Records per commit: about what one 50 ms batch holds at saturation."""


class Recorder:
    """Stands in for the worker's transaction: counts what would be produced."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0
        self.routed: list[InputRecord] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        **_: object,
    ) -> None:
        self.records += 1
        self.bytes += len(value or b"")
        if topic == topics.SUBSCRIBER_ROUTE:
            assert partition is not None
            self.routed.append(InputRecord(topic, partition, 0, key, value, None))


async def _never_set_aside(record: InputRecord, error: str) -> None:
    raise AssertionError(f"set aside: {error}")


def inputs(events: int, accounts: int) -> list[InputRecord]:
    """The bench load as input records, spread over partitions by order like the producer;
    orders go round-robin over ``accounts`` accounts, one per subscription, as in the bench."""
    spec = LoadSpec(run="P0000000", events=events, rate=None, accounts=accounts)
    fills_per_order = spec.fills_per_order
    stamp = stamp_text(time.time())
    records: list[InputRecord] = []
    offsets = [0] * PARTITIONS
    for event in range(events):
        order_index = event // fills_per_order
        partition = order_index % PARTITIONS
        if event % fills_per_order == 0:
            key, value = order_record(spec, order_index, stamp)
            records.append(
                InputRecord(topics.ORDERS, partition, offsets[partition], key, value, None)
            )
            offsets[partition] += 1
        key, value = execution_record(spec, event, stamp)
        records.append(
            InputRecord(topics.EXECUTIONS, partition, offsets[partition], key, value, time.time())
        )
        offsets[partition] += 1
    return records


async def run(
    events: int, subscriptions: int, profile: bool, anomalies: bool = True
) -> dict[str, float]:
    settings = Settings(app_id="process-cost")
    with tempfile.TemporaryDirectory() as folder:
        rocks = RocksTables(Path(folder), table_specs(settings.app_id), 64 * 1024 * 1024)
        tables = {
            name: PartitionedState(rocks, rocks.specs[name])
            for name in (ORDER_STATE, TIMERS, HISTORY, SUB_SEQ, ANOMALY_STATS, POSITIONS)
        }
        for name in tables:
            for partition in range(PARTITIONS):
                rocks.open(name, partition, fresh=True)
        out = Recorder()
        metrics = Metrics()
        index = SubscriptionIndex()
        for number in range(subscriptions):
            request = CreateRequest(
                name=f"bench-{number}",
                filter=Filter.from_dict({"accounts": [f"ACC-{number}"]}),
                format=OutputFormat.JSON,
            )
            index.upsert(
                new_subscription(
                    request,
                    subscription_id=f"bench-{number}",
                    token_hash="0" * 64,
                    now=datetime.now(UTC),
                )
            )
        sequencer = SubscriberSequencer(
            tables[SUB_SEQ], out, index, PARTITIONS, set_aside=_never_set_aside
        )
        output = SubscriberOutput(sequencer, None, metrics)  # type: ignore[arg-type]
        backfill = SubscriptionBackfill(tables[HISTORY], tables[TIMERS], index, output, metrics)
        # the commit followers, as the worker has them: what they fold at each commit counts
        stats, analytics = DeliveryStats(), Analytics(metrics)
        router = SubscriptionRouter(index, output, backfill, stats, metrics, analytics)
        join = JoinProcessor(
            settings=settings,
            states=tables[ORDER_STATE],
            timers=tables[TIMERS],
            history=tables[HISTORY],
            out=out,
            decoder=InputDecoder(None),
            metrics=metrics,
            anomalies=(
                AnomalyFlags(tables[ANOMALY_STATS], settings.anomaly_rules, metrics)
                if anomalies
                else None
            ),
            confirmation_sinks=[router],
            positions=PositionsProcessor(
                tables[POSITIONS], out, PARTITIONS, set_aside=_never_set_aside
            ),
        )
        records = inputs(events, subscriptions)
        # the commit's table half, as the worker runs it (its Kafka half is the broker's)
        committer = Committer(out, list(tables.values()), [stats, analytics])  # type: ignore[arg-type]
        profiler = cProfile.Profile() if profile else None
        started_cpu = time.process_time()
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        with instructions.counting():
            for start in range(0, len(records), BATCH):
                for record in records[start : start + BATCH]:
                    await join.process(record)
                routed, out.routed = out.routed, []
                for record in routed:
                    await sequencer.process(record)
                committer.send_changelogs()
                committer.apply()
            analytics.fold()  # what the worker folds every second, the last of it here
        if profiler:
            profiler.disable()
        cpu = time.process_time() - started_cpu
        wall = time.perf_counter() - started
        rocks.close_all()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return {
        "executions": events,
        "cpu_us_per_execution": cpu / events * 1e6,
        "wall_us_per_execution": wall / events * 1e6,
        "records_out_per_execution": out.records / events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--subscriptions", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--without-anomalies", action="store_true", help="leave the anomaly flags out (their cost)"
    )
    parser.add_argument(
        "--python-gc",
        action="store_true",
        help="keep Python's default garbage collector settings (the worker tunes them)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the instructions per execution with perf (steady within about a "
        "percent, where CPU seconds on a shared host move by a third)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.instructions:
        command = [a for a in sys.argv[1:] if a not in ("--instructions", "--json")]
        try:
            result = counted(command)
        except instructions.Unavailable as exc:
            sys.exit(f"cannot count instructions: {exc}")
    else:
        if not args.python_gc:
            tune_garbage_collector()
        result = asyncio.run(
            run(args.events, args.subscriptions, args.profile, not args.without_anomalies)
        )
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['executions']} executions, {args.subscriptions} subscription(s): "
        f"{result['cpu_us_per_execution']:.1f} us CPU per execution "
        f"({result['wall_us_per_execution']:.1f} us wall), "
        f"{result['records_out_per_execution']:.2f} records out per execution"
    )
    if "instructions_per_execution" in result:
        print(
            f"{result['instructions_per_execution']:,} instructions per execution "
            "(user space, all threads)"
        )


def counted(arguments: list[str]) -> dict[str, float]:
    """The measurement with ``arguments``, run under perf: its result, with the instructions
    per execution. Raises :class:`bench.instructions.Unavailable` where perf cannot count."""
    total, printed = instructions.count(_command(arguments))
    result: dict[str, float] = json.loads(printed)
    result["instructions_per_execution"] = round(total / result["executions"])
    return result


def measured(arguments: list[str]) -> dict[str, float]:
    """The measurement with ``arguments`` in a process of its own: :func:`counted` where perf
    can count, else the CPU seconds alone."""
    try:
        return counted(arguments)
    except instructions.Unavailable:
        done = subprocess.run(_command(arguments), capture_output=True, text=True, check=True)
        result: dict[str, float] = json.loads(done.stdout)
        return result


def _command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.process_cost", *arguments, "--json"]


if __name__ == "__main__":
    main()
