"""The floor of one exactly-once hop: a relay with no logic on confluent-kafka (librdkafka).

consume -> produce K records per input -> send the offsets -> commit, one Kafka transaction per
polled batch (KIP-447: the offsets go into the transaction with the consumer's group metadata,
so a zombie is fenced by the group generation, not by a transactional id per partition). The
work is done in librdkafka's C threads and the Python loop only hands records over, so this is
the least a Python process pays for an exactly-once read-process-write hop on this machine:
whatever the pipeline spends above it is its own logic (or its client library).

``--outputs K`` models the pipeline's writes per execution. For K=4: a confirmation
(``execdist.confirmations``), a subscriber record (``execdist.sub.<id>``) and two changelog
records (order state, timers). They go to K *different* topics: output 1 to ``--sink`` (the
checker reads only it, so each exec_id arrives once and duplicates still mean duplicates) and
output i > 1 to ``<sink>.out<i>``. Writing all K to the sink would put as many bytes on the
broker but touch fewer partitions per transaction, and the pipeline pays per partition touched
(AddPartitionsToTxn, one record batch per partition per produce request, a commit marker on
each partition), so separate topics model it better. Every output keeps the input's key and is
partitioned with murmur2 like the Java client and aiokafka, so it lands on the input's partition
number, as the pipeline's changelog records do.

``--no-transactions`` does the same at-least-once (produce, flush, commit the offsets), to tell
the cost of transactions from the cost of the hop.

``--ready-file`` is created once the relay owns its partitions and a few warm-up transactions
(one record to every partition of every output topic, a key no checker counts) are committed:
topic metadata, the transaction coordinator and the producer id are in place, so a latency run
started then does not count the relay's start-up. ``--stats-file`` gets, on exit, the records
relayed and the CPU time (all threads) from the first record to the last commit, the relay's own
cost without its start-up or idle polling. SIGTERM and SIGINT finish the batch in hand, then stop.

    python -m bench.eos_relay --source bench.floor.in --sink bench.floor.out --group g1 --outputs 4
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from bench.common import BROKER

WARMUP_KEY = b"~warmup"
"""Key of the warm-up records; the checker only counts keys that start with its run's id."""


def output_topics(sink: str, outputs: int) -> list[str]:
    """The sink, then ``<sink>.out2`` ... ``<sink>.out<K>`` (see the module docstring)."""
    return [sink] + [f"{sink}.out{i}" for i in range(2, outputs + 1)]


def cpu_seconds() -> float:
    """CPU time of this process, librdkafka's threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stats:
    """What the relay did, for the CPU per record of the ceilings."""

    def __init__(self) -> None:
        self.records = 0
        self.batches = 0
        self.aborted = 0
        self.first_cpu: float | None = None
        self.first_wall: float | None = None
        self.last_cpu = 0.0
        self.last_wall = 0.0

    def batch_started(self) -> None:
        if self.first_cpu is None:
            self.first_cpu, self.first_wall = cpu_seconds(), time.monotonic()

    def batch_done(self, records: int) -> None:
        self.records += records
        self.batches += 1
        self.last_cpu, self.last_wall = cpu_seconds(), time.monotonic()

    def as_dict(self) -> dict[str, Any]:
        cpu = self.last_cpu - self.first_cpu if self.first_cpu is not None else 0.0
        wall = self.last_wall - self.first_wall if self.first_wall is not None else 0.0
        return {
            "records": self.records,
            "batches": self.batches,
            "aborted": self.aborted,
            "cpu_s": round(cpu, 4),
            "wall_s": round(wall, 4),
            "cpu_us_per_record": round(cpu / self.records * 1e6, 2) if self.records else None,
        }


def consumer_config(args: argparse.Namespace) -> dict[str, Any]:
    """The relay's consumer: read_committed; it commits its offsets itself."""
    return {
        "bootstrap.servers": BROKER,
        "group.id": args.group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # the broker answers a fetch as soon as there is a record, or after this long
        "fetch.wait.max.ms": args.fetch_wait_ms,
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
    }


def producer_config(args: argparse.Namespace) -> dict[str, Any]:
    """The relay's idempotent producer (a transactional id is added when it has one)."""
    return {
        "bootstrap.servers": BROKER,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": args.linger_ms,
        "partitioner": "murmur2_random",
        # A transaction begun right after a commit is refused with CONCURRENT_TRANSACTIONS
        # until the broker has written the previous one's markers (KAFKA-5477); librdkafka
        # retries its AddPartitionsToTxn after retry.backoff.ms, growing to
        # retry.backoff.max.ms (100 ms and 1 s by default), which put 100-1000 ms on every
        # transaction of a relay that keeps up. Retry every few ms, as the pipeline does.
        "retry.backoff.ms": args.retry_backoff_ms,
        "retry.backoff.max.ms": args.retry_backoff_ms,
        "queue.buffering.max.messages": max(100_000, 2 * args.max_batch * args.outputs),
    }


def without_errors(batch: list[Message]) -> list[Message]:
    """The polled records; a retriable error is dropped, any other raised."""
    good = []
    for message in batch:
        error = message.error()
        if error is None:
            good.append(message)
        elif error.fatal() or not error.retriable():
            raise KafkaException(error)
    return good


def positions(
    batch: list[Message],
) -> tuple[list[TopicPartition], dict[tuple[str, int], int]]:
    """The batch's next offset per partition (to commit) and its first (to seek back to)."""
    offsets: dict[tuple[str, int], int] = {}
    firsts: dict[tuple[str, int], int] = {}
    for message in batch:
        # polled records (errors are dropped by without_errors) always have all three
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        firsts.setdefault((topic, partition), offset)
        offsets[(topic, partition)] = offset + 1
    return [TopicPartition(t, p, o) for (t, p), o in offsets.items()], firsts


def argument_parser(description: str, *, at_least_once: bool) -> argparse.ArgumentParser:
    """The relay's arguments (``--no-transactions`` when it can run at-least-once)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--outputs", type=int, default=1, help="records produced per input")
    if at_least_once:
        parser.add_argument(
            "--no-transactions",
            dest="transactions",
            action="store_false",
            help="at-least-once: produce, flush, commit the offsets",
        )
    parser.add_argument("--max-batch", type=int, default=5000, help="records per transaction")
    parser.add_argument("--fetch-wait-ms", type=int, default=5)
    parser.add_argument("--linger-ms", type=float, default=1)
    parser.add_argument("--retry-backoff-ms", type=int, default=5)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--stats-file", type=Path)
    return parser


def parse_arguments(
    description: str, argv: list[str] | None, *, at_least_once: bool
) -> argparse.Namespace:
    parser = argument_parser(description, at_least_once=at_least_once)
    args = parser.parse_args(argv)
    if args.outputs < 1:
        parser.error("--outputs must be at least 1")
    return args


class Relay:
    def __init__(self, args: argparse.Namespace) -> None:
        self.source: str = args.source
        self.topics = output_topics(args.sink, args.outputs)
        self.transactional: bool = args.transactions
        self.max_batch: int = args.max_batch
        self.ready_file: Path | None = args.ready_file
        self.stopping = False
        self.assigned = False
        self.pending: list[Message] = []
        """Records polled while waiting for the partitions, relayed with the first batch."""
        self.stats = Stats()
        self.delivery_errors: list[KafkaError] = []
        self.consumer = Consumer(consumer_config(args))
        config = {
            **producer_config(args),
            # only failed deliveries call back: no Python call per record on the happy path
            "delivery.report.only.error": True,
            "on_delivery": self._delivered,
        }
        if self.transactional:
            config["transactional.id"] = f"{args.group}-{uuid.uuid4().hex[:8]}"
        self.producer = Producer(config)

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.delivery_errors.append(error)

    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self.assigned = True

    def stop(self, _signum: int, _frame: Any) -> None:
        self.stopping = True

    def produce(self, key: bytes | None, value: bytes | None) -> None:
        for topic in self.topics:
            while True:
                try:
                    self.producer.produce(topic, value, key)
                    break
                except BufferError:  # the local queue is full: let librdkafka send some
                    self.producer.poll(0.01)

    def start(self) -> None:
        if self.transactional:
            self.producer.init_transactions(30)
        self.consumer.subscribe([self.source], on_assign=self._on_assign)
        while not self.assigned and not self.stopping:
            message = self.consumer.poll(0.1)
            if message is not None:
                self.pending.append(message)
        self.warm_up()
        if self.ready_file is not None:
            self.ready_file.write_text(str(time.time()))

    def warm_up(self, transactions: int = 3) -> None:
        """A few transactions of one record to every partition of every output topic: the
        first transaction to touch a partition costs more (metadata, leader connection, the
        broker's first marker there), and the pipeline's steady state has touched them all."""
        partitions = {
            topic: list(self.producer.list_topics(topic, 30).topics[topic].partitions)
            for topic in self.topics
        }
        for _ in range(transactions):
            if self.transactional:
                self.producer.begin_transaction()
            for topic, numbers in partitions.items():
                for partition in numbers:
                    self.producer.produce(topic, b"{}", WARMUP_KEY, partition)
            if self.transactional:
                self.producer.commit_transaction(30)
            else:
                self.producer.flush(30)
            self.raise_delivery_errors()

    def raise_delivery_errors(self) -> None:
        if self.delivery_errors:
            raise KafkaException(self.delivery_errors[0])

    def take_batch(self) -> list[Message]:
        """Wait up to 100 ms for a record, then take what is already fetched, without waiting."""
        if self.pending:
            batch, self.pending = self.pending, []
        else:
            first = self.consumer.poll(0.1)
            if first is None:
                return []
            batch = [first]
        batch += self.consumer.consume(self.max_batch - len(batch), 0)
        return without_errors(batch)

    def run(self) -> None:
        while not self.stopping:
            batch = self.take_batch()
            if not batch:
                continue
            self.stats.batch_started()
            commit, firsts = positions(batch)
            if self.transactional:
                self.relay_transaction(batch, commit, firsts)
            else:
                for message in batch:
                    self.produce(message.key(), message.value())
                self.producer.flush()
                self.raise_delivery_errors()
                self.consumer.commit(offsets=commit, asynchronous=False)
            self.stats.batch_done(len(batch))

    def relay_transaction(
        self,
        batch: list[Message],
        commit: list[TopicPartition],
        firsts: dict[tuple[str, int], int],
    ) -> None:
        self.producer.begin_transaction()
        try:
            for message in batch:
                self.produce(message.key(), message.value())
            self.producer.send_offsets_to_transaction(
                commit, self.consumer.consumer_group_metadata(), 30
            )
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                raise
            # the batch is undone: read it again from where it started
            self.producer.abort_transaction(30)
            self.stats.aborted += 1
            for (topic, partition), offset in firsts.items():
                self.consumer.seek(TopicPartition(topic, partition, offset))

    def close(self, stats_file: Path | None) -> None:
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)
            if stats_file is not None:
                stats_file.write_text(json.dumps(self.stats.as_dict()))


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments((__doc__ or "").split("\n\n")[0], argv, at_least_once=True)
    relay = Relay(args)
    signal.signal(signal.SIGTERM, relay.stop)
    signal.signal(signal.SIGINT, relay.stop)
    try:
        relay.start()
        relay.run()
    finally:
        relay.close(args.stats_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
