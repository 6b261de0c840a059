"""The exactly-once hop of :mod:`bench.eos_relay` on confluent-kafka's asyncio classes.

The same relay (consume -> K records per input to K topics -> the offsets -> commit, one
transaction per polled batch, read_committed, KIP-447 group metadata), written the way an
asyncio service would use ``confluent_kafka.aio``: ``AIOConsumer`` and ``AIOProducer``, every
call awaited on the event loop. It exists to measure the choice the engine made (the
synchronous classes, their waiting calls on two threads of the engine's own, the processing
on the event loop) against this one, on the same broker and load:

    make bench-floor BENCH_FLOOR_ARGS="--floors 4 --client aio"

Same arguments, ready file and stats file as :mod:`bench.eos_relay`. What the classes do
differently, read from confluent-kafka's source: each ``produce`` returns an asyncio future
that a delivery report resolves (so every record calls back into Python, where the engine
asks for failed deliveries only), records are buffered in Python and handed to librdkafka in
batches, and every waiting call goes through a thread pool. ``produce`` takes no headers, which
the engine's dead-letter records carry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.aio import AIOConsumer, AIOProducer

from bench.eos_relay import (
    WARMUP_KEY,
    Stats,
    consumer_config,
    output_topics,
    parse_arguments,
    positions,
    producer_config,
    without_errors,
)


class AioRelay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.source: str = args.source
        self.topics = output_topics(args.sink, args.outputs)
        self.max_batch: int = args.max_batch
        self.stopping = False
        self.assigned = asyncio.Event()
        self.pending: list[Message] = []
        self.stats = Stats()
        self.consumer = AIOConsumer(consumer_config(args))
        self.producer = AIOProducer(
            {**producer_config(args), "transactional.id": f"{args.group}-{uuid.uuid4().hex[:8]}"}
        )

    async def _on_assign(self, _consumer: Any, _partitions: list[TopicPartition]) -> None:
        self.assigned.set()

    def stop(self) -> None:
        self.stopping = True

    async def start(self) -> None:
        await self.producer.init_transactions(30)
        await self.consumer.subscribe([self.source], on_assign=self._on_assign)
        while not self.assigned.is_set() and not self.stopping:
            message = await self.consumer.poll(0.1)
            if message is not None:
                self.pending.append(message)
        await self.warm_up()
        if self.args.ready_file is not None:
            self.args.ready_file.write_text(str(time.time()))

    async def warm_up(self, transactions: int = 3) -> None:
        metadata = await self.producer.list_topics(None, 30)
        partitions = {topic: list(metadata.topics[topic].partitions) for topic in self.topics}
        for _ in range(transactions):
            await self.producer.begin_transaction()
            deliveries = [
                await self.producer.produce(topic, b"{}", WARMUP_KEY, partition=partition)
                for topic, numbers in partitions.items()
                for partition in numbers
            ]
            await self.producer.commit_transaction(30)
            await asyncio.gather(*deliveries)

    async def take_batch(self) -> list[Message]:
        if self.pending:
            batch, self.pending = self.pending, []
        else:
            first = await self.consumer.poll(0.1)
            if first is None:
                return []
            batch = [first]
        batch += await self.consumer.consume(self.max_batch - len(batch), 0)
        return without_errors(batch)

    async def run(self) -> None:
        while not self.stopping:
            batch = await self.take_batch()
            if not batch:
                continue
            self.stats.batch_started()
            commit, firsts = positions(batch)
            await self.relay_transaction(batch, commit, firsts)
            self.stats.batch_done(len(batch))

    async def relay_transaction(
        self,
        batch: list[Message],
        commit: list[TopicPartition],
        firsts: dict[tuple[str, int], int],
    ) -> None:
        await self.producer.begin_transaction()
        try:
            deliveries = []
            for message in batch:
                for topic in self.topics:
                    deliveries.append(
                        await self.producer.produce(topic, message.value(), message.key())
                    )
            metadata = await self.consumer.consumer_group_metadata()
            await self.producer.send_offsets_to_transaction(commit, metadata, 30)
            await self.producer.commit_transaction(60)
            # the commit flushed them: every delivery is settled, failures raise here
            await asyncio.gather(*deliveries)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise
            await self.producer.abort_transaction(30)
            self.stats.aborted += 1
            for (topic, partition), offset in firsts.items():
                await self.consumer.seek(TopicPartition(topic, partition, offset))

    async def close(self, stats_file: Path | None) -> None:
        try:
            await self.consumer.close()
        finally:
            await self.producer.close()
            if stats_file is not None:
                stats_file.write_text(json.dumps(self.stats.as_dict()))


async def amain(args: argparse.Namespace) -> None:
    relay = AioRelay(args)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, relay.stop)
    loop.add_signal_handler(signal.SIGINT, relay.stop)
    try:
        await relay.start()
        await relay.run()
    finally:
        await relay.close(args.stats_file)


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n\n")[0]
    asyncio.run(amain(parse_arguments(description, argv, at_least_once=False)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
