"""A worker restarted after an outage: ``make bench-outage`` (``python -m bench.outage``).

While the worker is down, a backlog is written that starts with ``--filler`` orders of other
trades, then ``--orders`` orders, each followed by its 4 executions, JSON, keyed by order_id,
as they would have come in. The worker, with an orphan timeout of ``--orphan-timeout``
seconds, then drains it. Its executions are read long before their orders, which wait behind
the filler: a worker that judged the timeout while still reading that backlog would reject
them as orphans. Its own counters say how many it confirmed and how many it dead-lettered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import httpx
import orjson
from confluent_kafka import Producer

from bench.common import BROKER, reset_topics, say
from bench.pipeline import Cluster
from execdist import topics

FILLS = 4


def counter(url: str, name: str) -> float:
    """The sum of a metric's samples on one worker."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def order(order_id: str) -> bytes:
    return orjson.dumps(
        {
            "order_id": order_id,
            "account": "ACC-1",
            "symbol": "MSFT",
            "side": "BUY",
            "quantity": "100",
            "order_type": "LIMIT",
            "limit_price": "420.00",
            "currency": "USD",
            "version": 1,
            "event_time": "2026-11-26T09:30:00.000000Z",
        }
    )


def execution(order_id: str, seq: int) -> bytes:
    return orjson.dumps(
        {
            "exec_id": f"{order_id}-X{seq}",
            "order_id": order_id,
            "seq": seq,
            "exec_type": "TRADE",
            "ref_exec_id": None,
            "last_qty": "25",
            "last_px": "415.10",
            "venue": "XNAS",
            "exec_time": "2026-11-26T09:30:01.000000Z",
        }
    )


def write_backlog(filler: int, orders: int) -> None:
    run = uuid.uuid4().hex[:6]
    producer = Producer(
        {
            "bootstrap.servers": BROKER,
            "linger.ms": 20,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for n in range(filler):
        order_id = f"F{run}-{n}"
        producer.produce(topics.ORDERS, order(order_id), order_id)
        if n % 5000 == 0:
            producer.poll(0)
    for n in range(orders):
        order_id = f"O{run}-{n}"
        producer.produce(topics.ORDERS, order(order_id), order_id)
        for seq in range(1, FILLS + 1):
            producer.produce(topics.EXECUTIONS, execution(order_id, seq), order_id)
        if n % 2000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the backlog was not written within 120 s")


def run(filler: int, orders: int, orphan_timeout: float, timeout_s: float) -> dict[str, float]:
    asyncio.run(reset_topics())
    env = {"EXECDIST_ORPHAN_TIMEOUT_S": str(orphan_timeout)}
    first = Cluster(1, env)
    first.start()  # creates the topics
    first.stop()
    write_backlog(filler, orders)
    say(f"backlog written: {filler + orders:,} orders, {FILLS * orders:,} executions")
    cluster = Cluster(1, env)
    started = time.monotonic()
    cluster.start()
    expected = FILLS * orders
    try:
        while True:
            confirmed = counter(cluster.url, "execdist_confirmations_total")
            rejected = counter(cluster.url, "execdist_dlq_records_total")
            held = counter(cluster.url, "execdist_held_orders")
            took = time.monotonic() - started
            if confirmed + rejected >= expected and held == 0:
                break
            if took > timeout_s:
                say(f"not drained within {timeout_s:.0f} s")
                break
            time.sleep(1.0)
    finally:
        cluster.stop()
    say(
        f"orphan timeout {orphan_timeout:g} s: confirmed {confirmed:,.0f} of {expected:,}, "
        f"dead-lettered {rejected:,.0f}, drained in {took:.1f} s from the worker's start"
    )
    return {
        "orphan_timeout_s": orphan_timeout,
        "executions": expected,
        "confirmed": confirmed,
        "dead_lettered": rejected,
        "seconds": round(took, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filler", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--orphan-timeout", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    args = parser.parse_args()
    result = run(args.filler, args.orders, args.orphan_timeout, args.timeout)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
