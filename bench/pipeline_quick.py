"""A quick throughput figure for one worker: preload inputs, then time the drain.

Produces ``--orders`` orders with one TRADE each to the input topics, starts one worker, and
measures how long it takes until every confirmation is readable (read_committed) on
``execdist.confirmations``. Closed-loop and coarse on purpose: a first figure for the README,
not the benchmark of issue #6.

    python -m bench.pipeline_quick --orders 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.fanout import BROKER, RESULTS, start_worker


async def preload(orders: int, run: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BROKER, linger_ms=20, enable_idempotence=True)
    await producer.start()
    try:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for n in range(orders):
            order_id = f"Q{run}-{n:07d}"
            key = order_id.encode()
            await producer.send(
                "orders",
                orjson.dumps(
                    {
                        "order_id": order_id,
                        "account": f"ACC-{n % 50}",
                        "symbol": "MSFT",
                        "side": "BUY",
                        "quantity": "100",
                        "order_type": "MARKET",
                        "limit_price": None,
                        "currency": "USD",
                        "version": 1,
                        "event_time": now,
                    }
                ),
                key=key,
            )
            await producer.send(
                "executions",
                orjson.dumps(
                    {
                        "exec_id": f"{order_id}-1",
                        "order_id": order_id,
                        "seq": 1,
                        "exec_type": "TRADE",
                        "ref_exec_id": None,
                        "last_qty": "100",
                        "last_px": "415.10",
                        "venue": "XNAS",
                        "exec_time": now,
                    }
                ),
                key=key,
            )
        await producer.flush()
    finally:
        await producer.stop()


async def drain(orders: int, run: str, timeout: float) -> float:
    consumer = AIOKafkaConsumer(
        "execdist.confirmations",
        bootstrap_servers=BROKER,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout
    prefix = f"Q{run}-".encode()
    try:
        while seen < orders and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                seen += sum(1 for r in records if r.key and r.key.startswith(prefix))
        return time.monotonic()
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10000)
    args = parser.parse_args(argv)
    run = uuid.uuid4().hex[:6]
    asyncio.run(preload(args.orders, run))
    workdir = Path(tempfile.mkdtemp(prefix="execdist-quick-"))
    started = time.monotonic()
    process, _port = start_worker(workdir)
    ready = time.monotonic()
    try:
        finished = asyncio.run(drain(args.orders, run, timeout=600))
    finally:
        process.terminate()
        process.wait(30)
    elapsed = finished - ready
    result = {
        "orders": args.orders,
        "input_records": 2 * args.orders,
        "confirmations": args.orders,
        "startup_s": round(ready - started, 2),
        "drain_s": round(elapsed, 2),
        "input_records_per_s": round(2 * args.orders / elapsed, 1),
        "confirmations_per_s": round(args.orders / elapsed, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_quick.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
