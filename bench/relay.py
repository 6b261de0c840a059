"""The ceiling of any Python worker: a relay with no logic, consume -> send -> commit.

Reads ``--source`` in a consumer group, sends every record unchanged to ``--sink`` and commits
the offsets once the batch is acknowledged (at-least-once). With ``--transactional`` it does the
same inside Kafka transactions, offsets included (exactly-once, as the pipeline does), so the
cost of transactions alone can be told from the cost of the pipeline's logic.

    python -m bench.relay --source bench.relay.in --sink bench.relay.out --group g1
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import BROKER


async def relay(source: str, sink: str, group: str, transactional: bool) -> None:
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=BROKER,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_wait_ms=5,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=BROKER,
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        max_batch_size=256 * 1024,
        transactional_id=f"{group}-{uuid.uuid4().hex[:6]}" if transactional else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            if not batches:
                continue
            offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
            if transactional:
                async with producer.transaction():
                    for records in batches.values():
                        for record in records:
                            await producer.send(sink, record.value, key=record.key)
                    await producer.send_offsets_to_transaction(offsets, group)
            else:
                futures = [
                    await producer.send(sink, record.value, key=record.key)
                    for records in batches.values()
                    for record in records
                ]
                await asyncio.gather(*futures)
                await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--transactional", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(relay(args.source, args.sink, args.group, args.transactional))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
