"""A small, realistic feed of orders and executions for ``make run`` and for tests.

``python -m execdist.demo`` produces orders and their fills (with the odd correction and bust)
to the input topics until stopped. :func:`order_flow` is deterministic for a seed, so tests use
it to know exactly which confirmations must come out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from execdist import topics
from execdist.infra import clients
from execdist.settings import Settings

log = logging.getLogger("execdist.demo")

ACCOUNTS = ("ACC-EQ-01", "ACC-EQ-02", "ACC-HF-07", "ACC-PB-11")
SYMBOLS = {"AAPL": "187.45", "MSFT": "415.20", "NVDA": "121.80", "SAP": "192.10", "ASML": "710.50"}
VENUES = ("XNAS", "XNYS", "BATS", "XETR", "ARCX")
SIDES = ("BUY", "SELL", "SELL_SHORT")


@dataclass(frozen=True)
class FeedRecord:
    topic: str
    key: bytes
    value: bytes


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_flow(
    rng: random.Random,
    order_id: str,
    *,
    max_fills: int = 4,
    allow_amend: bool = True,
    fat_finger: float = 0.0,
) -> Iterator[FeedRecord]:
    """An order followed by its executions: trades, and sometimes a correction or a bust.

    ``fat_finger``: the chance that a trade's price is 8 % off (which the PRICE_DEVIATION rule
    flags once its symbol has history); 0 leaves the flow, and ``rng``'s use, as they were."""
    symbol = rng.choice(sorted(SYMBOLS))
    base_px = Decimal(SYMBOLS[symbol])
    quantity = rng.randrange(1, 20) * 100
    order = {
        "order_id": order_id,
        "account": rng.choice(ACCOUNTS),
        "symbol": symbol,
        "side": rng.choice(SIDES),
        "quantity": str(quantity),
        "order_type": "LIMIT",
        "limit_price": str(base_px + Decimal("0.50")),
        "currency": "USD",
        "version": 1,
        "event_time": _now(),
    }
    key = order_id.encode()
    yield FeedRecord(topics.ORDERS, key, orjson.dumps(order))
    remaining = quantity
    seq = 0
    trades: list[str] = []
    for _ in range(rng.randrange(1, max_fills + 1)):
        if remaining <= 0:
            break
        seq += 1
        qty = min(remaining, rng.randrange(1, 6) * 100)
        remaining -= qty
        exec_id = f"{order_id}-E{seq}"
        px = base_px + Decimal(rng.randrange(-25, 26)) / Decimal(100)
        if fat_finger and rng.random() < fat_finger:
            px = (px * Decimal("1.08")).quantize(Decimal("0.01"))
        yield FeedRecord(
            topics.EXECUTIONS,
            key,
            orjson.dumps(_execution(exec_id, order_id, seq, "TRADE", None, qty, px)),
        )
        trades.append(exec_id)
        if rng.random() < 0.08 and trades:
            seq += 1
            ref = rng.choice(trades)
            yield FeedRecord(
                topics.EXECUTIONS,
                key,
                orjson.dumps(
                    _execution(
                        f"{order_id}-E{seq}",
                        order_id,
                        seq,
                        "CORRECT",
                        ref,
                        qty,
                        px + Decimal("0.01"),
                    )
                ),
            )
        elif rng.random() < 0.04 and trades:
            seq += 1
            ref = trades.pop(rng.randrange(len(trades)))
            yield FeedRecord(
                topics.EXECUTIONS,
                key,
                orjson.dumps(_execution(f"{order_id}-E{seq}", order_id, seq, "BUST", ref, 0, px)),
            )
    if allow_amend and rng.random() < 0.05:
        yield FeedRecord(
            topics.ORDERS,
            key,
            orjson.dumps(
                {**order, "version": 2, "quantity": str(quantity + 100), "event_time": _now()}
            ),
        )


def _execution(
    exec_id: str, order_id: str, seq: int, exec_type: str, ref: str | None, qty: int, px: Decimal
) -> dict[str, object]:
    return {
        "exec_id": exec_id,
        "order_id": order_id,
        "seq": seq,
        "exec_type": exec_type,
        "ref_exec_id": ref,
        "last_qty": str(qty),
        "last_px": str(px),
        "venue": VENUES[seq % len(VENUES)],
        "exec_time": _now(),
    }


async def run_feed(
    settings: Settings, rate: float, limit: int | None, seed: int, fat_finger: float = 0.0
) -> int:
    """Produce order flows at about ``rate`` records per second; returns records sent."""
    rng = random.Random(seed)
    producer = clients.service_producer(settings, idempotent=True, linger_ms=5)
    await producer.start()
    sent = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    run_id = datetime.now(UTC).strftime("%H%M%S")
    try:
        number = 0
        while not stop.is_set() and (limit is None or sent < limit):
            number += 1
            for record in order_flow(rng, f"DEMO-{run_id}-{number:06d}", fat_finger=fat_finger):
                await producer.send(record.topic, record.value, key=record.key)
                sent += 1
                await asyncio.sleep(1.0 / rate)
            if number % 50 == 0:
                log.info("demo feed: %d records sent", sent)
    finally:
        await producer.stop()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Produce a demo feed of orders and executions.")
    parser.add_argument("--rate", type=float, default=20.0, help="records per second")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many records")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--fat-finger",
        type=float,
        default=0.01,
        help="chance that a trade's price is 8%% off, for the anomaly flags to catch",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sent = asyncio.run(
        run_feed(Settings.from_env(), args.rate, args.limit, args.seed, args.fat_finger)
    )
    log.info("demo feed stopped after %d records", sent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
