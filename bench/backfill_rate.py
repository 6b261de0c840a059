"""How fast a backfill walks the confirmation history: ``python -m bench.backfill_rate``.

Fills one partition's ``execdist-confirmation-history`` table (real RocksDB) with
``--confirmations`` confirmations as the join stores them (the bench's load: an order, then
its fills), then runs the backfill of one subscription that matches them all, tick after tick
with a slice of the whole tick, committing each tick's writes as the engine would, the
sequencer numbering every record (the transaction replaced by a counter). What it measures is
the walk's own rate on one core, apart from Kafka; a worker spends
``EXECDIST_BACKFILL_SLICE_S`` of each second of each of its partitions on it, so a backfill
over P partitions of a worker goes at about rate x slice x P.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.process_cost import PARTITIONS, Recorder, _never_set_aside
from execdist.agents.backfill import DONE, SubscriptionBackfill, progress_key
from execdist.agents.sequencing import SubscriberSequencer
from execdist.agents.subscriber_output import SubscriberOutput
from execdist.codecs.output import encode_json
from execdist.domain import ExecType, OrderStatus, Side
from execdist.domain.model import Confirmation
from execdist.domain.routing import SubscriptionIndex
from execdist.domain.subscriptions import CreateRequest, Filter, new_subscription
from execdist.metrics import Metrics
from execdist.runtime.topology import PunctuationContext
from execdist.tables.declarations import HISTORY, SUB_SEQ, TIMERS, history_key, table_specs
from execdist.tables.store import PartitionedState, RocksTables

FILLS = 4


def history_value(order: int, seq: int, at: datetime) -> tuple[bytes, bytes]:
    order_id = f"BF-{order:08d}"
    confirmation = Confirmation(
        confirmation_id=f"{order_id}-E{seq}",
        exec_id=f"{order_id}-E{seq}",
        order_id=order_id,
        account=f"ACC-{order % 50:03d}",
        symbol=("AAPL", "MSFT", "NVDA", "AMZN")[order % 4],
        side=Side.BUY,
        venue="XNAS",
        exec_type=ExecType.TRADE,
        ref_exec_id=None,
        seq=seq,
        last_qty=Decimal(100),
        last_px=Decimal("187.45"),
        cum_qty=Decimal(100 * seq),
        leaves_qty=Decimal(100 * (FILLS - seq)),
        avg_px=Decimal("187.45"),
        order_qty=Decimal(100 * FILLS),
        order_status=OrderStatus.FILLED if seq == FILLS else OrderStatus.PARTIALLY_FILLED,
        exec_time=at,
        confirmed_at=at,
    )
    return history_key(order_id, seq), encode_json(confirmation.to_dict())


async def run(confirmations: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        rocks = RocksTables(Path(folder), table_specs("backfill-rate"), 64 * 1024 * 1024)
        tables = {
            name: PartitionedState(rocks, rocks.specs[name]) for name in (HISTORY, TIMERS, SUB_SEQ)
        }
        for name in tables:
            for partition in range(PARTITIONS):
                rocks.open(name, partition, fresh=True)
        history = tables[HISTORY]
        now = datetime.now(UTC)
        for start in range(0, confirmations, 100_000):
            for n in range(start, min(start + 100_000, confirmations)):
                key, value = history_value(n // FILLS, n % FILLS + 1, now)
                history.put(0, key, value)
            history.committed()
        index = SubscriptionIndex()
        subscription = new_subscription(
            CreateRequest(name="backfill", filter=Filter(), backfill_from=now - timedelta(1)),
            subscription_id="backfill-rate",
            token_hash="0" * 64,
            now=now,
        )
        index.upsert(subscription)
        out = Recorder()
        metrics = Metrics()
        sequencer = SubscriberSequencer(
            tables[SUB_SEQ], out, index, PARTITIONS, set_aside=_never_set_aside
        )
        output = SubscriberOutput(sequencer, None, metrics)  # type: ignore[arg-type]
        backfill = SubscriptionBackfill(
            history, tables[TIMERS], index, output, metrics, slice_s=0.05
        )
        started, started_cpu = time.perf_counter(), time.process_time()
        ticks = 0
        while tables[TIMERS].get(0, progress_key(subscription.id)) != DONE:
            await backfill.punctuate(PunctuationContext(0))
            ticks += 1
            routed, out.routed = out.routed, []
            for record in routed:
                await sequencer.process(record)
            for table in tables.values():
                table.pending()
                table.committed()
        wall = time.perf_counter() - started
        cpu = time.process_time() - started_cpu
        rocks.close_all()
    return {
        "confirmations": confirmations,
        "records_out": out.records,
        "seconds": wall,
        "per_second": confirmations / wall,
        "cpu_us_each": cpu / confirmations * 1e6,
        "slices": ticks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--confirmations", type=int, default=1_000_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.confirmations))
    print(
        f"{result['confirmations']:,} confirmations in {result['seconds']:.1f} s: "
        f"{result['per_second']:,.0f}/s walking on one core ({result['cpu_us_each']:.1f} us CPU "
        f"each, {result['slices']} slices of 50 ms); {result['records_out']:,} records sent "
        "(subscriber records, and route records until the partition is numbered at once)"
    )


if __name__ == "__main__":
    main()
