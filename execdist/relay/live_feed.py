"""One Kafka consumer for every subscription the relay reads live on this worker.

Each subscription with clients here has a :class:`~.hub.SubscriptionReader` (its ring, its
clients, their backpressure), but the records come to all of them from one librdkafka
consumer: ``read_committed``, no group, partitions assigned as readers start and leave. A
fetch then carries every subscription's partitions, and librdkafka does the fetching and
parsing in its own threads: with a consumer per subscription, a hundred subscriptions were a
hundred fetch loops on the event loop, about a fifth of the relay's CPU.

The consumer is polled in a thread of its own; each polled batch is handed to the event loop
in one call, which gives every reader its records in offset order. Assignments, pauses and
resumes are carried out by that thread between two polls (the client's calls must not overlap
a poll in progress). A reader whose clients fall behind pauses its own partitions
(:meth:`LiveFeed.pause`) and resumes them once they drain, so a slow subscription holds up no
other.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from execdist.infra import clients
from execdist.settings import Settings

log = logging.getLogger(__name__)

POLL_BATCH = 1_000
"""Most records one poll hands to the event loop at once."""
POLL_WAIT_S = 0.05
"""Longest a poll waits for records: also how soon a new topic is assigned or a pause is
carried out."""
OFFSETS_TIMEOUT_S = 10.0
OFFSETS_RETRY_S = 0.1

LiveRecord = tuple[int, int, bytes]
"""``(partition, offset, value)`` of a record read live."""
Receiver = Callable[[list[LiveRecord]], None]


class LiveFeed:
    """The relay's shared consumer: :meth:`add` a topic with its start offsets and a receiver,
    which is called on the event loop with each batch of that topic's records."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._receivers: dict[str, Receiver] = {}
        self._partitions: dict[str, int] = {}
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._commands: queue.SimpleQueue[Callable[[Consumer], None]] = queue.SimpleQueue()

    def _started(self) -> None:
        if self._consumer is None:
            self._loop = asyncio.get_running_loop()
            self._consumer = clients.live_reader(self._settings)
            self._thread = threading.Thread(target=self._poll, name="relay-feed", daemon=True)
            self._thread.start()

    async def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        """Each partition's last stable offset: where a reader that starts now goes on from
        (records of a transaction still open lie before it and are delivered once it
        commits)."""
        if self._admin is None:
            self._admin = clients.offsets_admin(self._settings)
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        asked = {TopicPartition(topic, p): latest for p in range(partitions)}
        deadline = time.monotonic() + OFFSETS_TIMEOUT_S
        while True:
            futures = self._admin.list_offsets(
                asked,
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=OFFSETS_TIMEOUT_S,
            )
            try:
                ends: dict[int, int] = {}
                for tp, future in futures.items():
                    ends[tp.partition] = (await asyncio.wrap_future(future)).offset
                return ends
            except KafkaException as exc:
                # a topic created a moment ago may not have its leaders known yet
                if not _leaders_unknown(exc.args[0]) or time.monotonic() > deadline:
                    raise
                log.info("asking %s for its end offsets again: %s", topic, exc)
                await asyncio.sleep(OFFSETS_RETRY_S)

    def add(self, topic: str, position: dict[int, int], receiver: Receiver) -> None:
        """Read ``topic`` from ``position`` on, handing its records to ``receiver``."""
        self._started()
        self._receivers[topic] = receiver
        self._partitions[topic] = len(position)
        tps = [TopicPartition(topic, partition, offset) for partition, offset in position.items()]
        self._commands.put(lambda consumer: consumer.incremental_assign(tps))

    def remove(self, topic: str) -> None:
        """Stop reading ``topic``; records of it still on their way are dropped."""
        self._receivers.pop(topic, None)
        partitions = self._partitions.pop(topic, 0)
        if partitions:
            tps = self._tps(topic, partitions)
            self._commands.put(lambda consumer: consumer.incremental_unassign(tps))

    def pause(self, topic: str) -> None:
        """Fetch nothing more of ``topic`` until :meth:`resume` (what is already polled still
        comes); it goes on from the record after the last one polled."""
        if topic in self._partitions:
            tps = self._tps(topic, self._partitions[topic])
            self._commands.put(lambda consumer: consumer.pause(tps))

    def resume(self, topic: str) -> None:
        if topic in self._partitions:
            tps = self._tps(topic, self._partitions[topic])
            self._commands.put(lambda consumer: consumer.resume(tps))

    @staticmethod
    def _tps(topic: str, partitions: int) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for partition in range(partitions)]

    async def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._consumer is not None:
            self._consumer.close()
        self._consumer = self._thread = self._admin = None
        self._receivers.clear()
        self._partitions.clear()

    # ---- the polling thread ----------------------------------------------------------------

    def _poll(self) -> None:
        consumer, loop = self._consumer, self._loop
        assert consumer is not None and loop is not None
        while not self._stopping.is_set():
            try:
                while not self._commands.empty():
                    self._commands.get_nowait()(consumer)
                messages = clients.take_fetched(consumer, POLL_BATCH, POLL_WAIT_S)
            except (KafkaException, RuntimeError) as exc:
                if self._stopping.is_set():
                    return
                log.warning("the relay's live reader failed a poll, polling again: %s", exc)
                self._stopping.wait(0.1)
                continue
            if messages:
                try:
                    loop.call_soon_threadsafe(self._dispatch, messages)
                except RuntimeError:  # the loop has closed: the worker is stopping
                    return

    def _dispatch(self, messages: Sequence[object]) -> None:
        """On the event loop: each topic's records of one poll to its receiver, in order."""
        by_topic: dict[str, list[LiveRecord]] = {}
        for message in messages:
            error = message.error()  # type: ignore[attr-defined]
            if error is not None:
                log.warning("the relay's live reader: %s", error)
                continue
            topic = message.topic()  # type: ignore[attr-defined]
            records = by_topic.get(topic)
            if records is None:
                records = by_topic[topic] = []
            records.append(
                (message.partition(), message.offset(), message.value() or b"")  # type: ignore[attr-defined]
            )
        for topic, records in by_topic.items():
            receiver = self._receivers.get(topic)
            if receiver is not None:
                receiver(records)


def _leaders_unknown(error: KafkaError) -> bool:
    """The broker or librdkafka does not know the partitions' leaders (yet): asking again
    shortly may succeed."""
    return error.retriable() or error.code() in (
        KafkaError._NOENT,  # librdkafka: "No leaders found"
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.LEADER_NOT_AVAILABLE,
        # the broker's answer to list_offsets comes without librdkafka's retriable mark
        KafkaError.NOT_LEADER_FOR_PARTITION,
    )
