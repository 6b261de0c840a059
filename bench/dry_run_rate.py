"""How fast a dry-run scans ``execdist.confirmations``: ``python -m bench.dry_run_rate``.

Appends ``--confirmations`` confirmations (as the join writes them, JSON) to
``execdist.confirmations`` on the broker of ``EXECDIST_BROKER`` (use a broker of its own: the
records stay), then runs the dry-run's own scan over them (read_committed, from ``since`` to
the end) with a filter matching a quarter of them, without its time budget, and prints the
rate. The scan decodes every record into a Confirmation and matches it with the router's code.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from bench.backfill_rate import history_value
from execdist.domain.subscriptions import DryRunRequest, Filter
from execdist.infra.kafka_admin import ensure_topics
from execdist.services.dry_run import scan
from execdist.settings import Settings
from execdist.topics import CONFIRMATIONS


def produce(settings: Settings, confirmations: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": ",".join(settings.bootstrap_servers),
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
        }
    )
    now = datetime.now(UTC)
    for n in range(confirmations):
        _, value = history_value(n // 4, n % 4 + 1, now)
        while True:
            try:
                producer.produce(CONFIRMATIONS, value, key=f"BF-{n // 4:08d}".encode())
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--confirmations", type=int, default=1_000_000)
    args = parser.parse_args()
    settings = Settings.from_env()
    asyncio.run(ensure_topics(settings))
    since = datetime.now(UTC) - timedelta(seconds=1)
    started = time.perf_counter()
    produce(settings, args.confirmations)
    print(f"appended {args.confirmations:,} confirmations in {time.perf_counter() - started:.1f} s")
    request = DryRunRequest(
        filter=Filter.parse({"symbols": ["AAPL"]}), since=since, max_records=args.confirmations
    )
    started = time.perf_counter()
    result = scan(settings, request, time.monotonic() + 3600)
    seconds = time.perf_counter() - started
    print(
        f"dry-run scanned {result.scanned:,} confirmations in {seconds:.1f} s: "
        f"{result.scanned / seconds:,.0f}/s on one core; matched {result.matched:,}"
        f"{'' if result.stopped_by is None else ', stopped by ' + result.stopped_by}"
    )


if __name__ == "__main__":
    main()
