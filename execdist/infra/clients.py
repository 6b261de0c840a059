"""The one place where execdist's Kafka clients are configured.

The pipeline runs on confluent-kafka, the Python binding of librdkafka: it is the client with
KIP-447 transactions (offsets committed with the consumer's group metadata, so one
transactional producer serves every partition a worker owns), and measured on the same machine
it spends about a fifth of aiokafka's CPU per record. Every setting that matters for latency or
exactly-once is here, with the reason for it, so that no module builds a client of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient

from execdist.settings import Settings
from execdist.tables.declarations import MAX_VALUE_BYTES

TRANSACTION_TIMEOUT_MS = 10_000
"""How long the broker keeps a transaction open whose producer went silent (a killed worker)
before it aborts it. Until then ``read_committed`` readers of the partitions it wrote to wait,
so it is short, as in Kafka Streams (10 s); a batch's transaction lasts milliseconds."""


def _common(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": ",".join(settings.bootstrap_servers),
        "client.id": client_id,
        # the broker is usually on the same host or rack: do not let a lost connection wait
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "log_level": 3,
    }


def pipeline_consumer(settings: Settings, group_id: str) -> Consumer:
    """The consumer of the pipeline's inputs: one per worker process, in the pipeline's group.

    ``read_committed``; offsets are committed only in the worker's transaction. The range
    assignor gives a member the same partition numbers of every co-partitioned topic.
    """
    session_ms = int(settings.session_timeout.total_seconds() * 1000)
    return Consumer(
        {
            **_common(settings, f"{settings.worker_id}-pipeline"),
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # an event each time a fetch reaches a partition's end: how a quiet partition is
            # known to be read to its end, for timeouts that wait for input
            # (execdist.runtime.read_to_end)
            "enable.partition.eof": True,
            "partition.assignment.strategy": "range",
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": max(session_ms // 4, 500),
            # a fetch returns as soon as one record is there (or, read_committed, as soon as a
            # commit marker makes records readable), so the wait bounds only idle polling:
            # 10 ms cost the broker a hundred empty fetches a second per worker for nothing
            "fetch.wait.max.ms": 100,
            "fetch.min.bytes": 1,
            # every fetch takes a little of every partition, so no input holds back another:
            # with 8 MiB per partition under a 32 MiB cap, the executions' partitions filled
            # each fetch of a backlog and the orders waited, so executions were held for want
            # of their order (and after EXECDIST_ORPHAN_TIMEOUT_S rejected as orphans). A
            # record larger than the per-partition size is still fetched whole (KIP-74), and
            # the cap is above what all the partitions of a large worker take at once
            "max.partition.fetch.bytes": 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
            # records a worker fetches ahead of processing; small, so a revoked partition's
            # records are not fetched twice in bulk
            "queued.max.messages.kbytes": 16 * 1024,
        }
    )


def transactional_producer(
    settings: Settings,
    transactional_id: str,
    on_failed_delivery: Callable[[KafkaError, Message], None],
) -> Producer:
    """The worker's one transactional producer: every output, changelog record and input offset
    of a batch goes into its transaction. Only failed deliveries are reported (the commit waits
    for the others), so delivery reports cost nothing on the way."""
    return Producer(
        {
            **_common(settings, f"{settings.worker_id}-pipeline"),
            "transactional.id": transactional_id,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "enable.idempotence": True,
            "acks": "all",
            # the commit flushes at once, so a batch never waits for linger; outputs of a large
            # batch still go out while it is being processed. Not longer: the commit puts the
            # input offsets in first, and a batch of one record, as at low rates, then waits
            # for its records until the flush (10 ms raised p50 and p99 at 50 and 100 inputs/s;
            # BENCHMARKS.md, twenty-fourth pass)
            "linger.ms": 1,
            "batch.size": 1024 * 1024,
            "message.max.bytes": MAX_VALUE_BYTES + 64 * 1024,
            # uncompressed, as Kafka Streams' producers are by default: with one topic per
            # subscription most batches hold a record or two, each compressed on its own here
            # and decompressed again by the broker to validate it. With 1,000 subscriptions lz4
            # cost the worker a fifth of its CPU and the broker over half of its own; with one
            # it saved nothing measurable (BENCHMARKS.md, nineteenth pass)
            "compression.type": "none",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "delivery.report.only.error": True,
            "on_delivery": on_failed_delivery,
            # a transaction begun right after a commit may meet CONCURRENT_TRANSACTIONS while the
            # broker writes the previous one's markers: retry soon
            "retry.backoff.ms": 5,
            "retry.backoff.max.ms": 100,
        }
    )


def restore_consumer(settings: Settings) -> Consumer:
    """Reads a changelog to its end (``read_committed``: the last stable offset), no group."""
    return Consumer(
        {
            **_common(settings, f"{settings.worker_id}-restore"),
            "group.id": f"{settings.app_id}-restore-unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
            "max.partition.fetch.bytes": MAX_VALUE_BYTES + 64 * 1024,
            "fetch.max.bytes": 4 * MAX_VALUE_BYTES,
        }
    )


def group_offsets_reader(settings: Settings, group_id: str) -> Consumer:
    """Reads a downstream's consumer group's committed offsets (``committed()``) and a few
    records: it never subscribes, so it never joins that group nor commits for it."""
    return Consumer(
        {
            **_common(settings, f"{settings.worker_id}-group-offsets"),
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
            "max.partition.fetch.bytes": MAX_VALUE_BYTES + 64 * 1024,
            "queued.max.messages.kbytes": 1024,
        }
    )


def scan_consumer(settings: Settings, purpose: str) -> Consumer:
    """Reads a range of a topic once, for a request (a filter's dry-run): ``read_committed``,
    assigned partitions, no group membership and nothing committed. ``enable.partition.eof``
    tells the reader when a partition's committed end (the last stable offset) is reached."""
    return Consumer(
        {
            **_common(settings, f"{settings.worker_id}-{purpose}"),
            "group.id": f"{settings.app_id}-{purpose}-unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "max.partition.fetch.bytes": MAX_VALUE_BYTES + 64 * 1024,
            "fetch.max.bytes": 4 * MAX_VALUE_BYTES,
            # a bounded read: do not fetch far ahead of what the scan will use
            "queued.max.messages.kbytes": 8 * 1024,
        }
    )


def live_reader(settings: Settings) -> Consumer:
    """The relay's one reader of every subscriber topic with clients on this worker
    (:mod:`execdist.relay.live_feed`): ``read_committed``, assigned partitions, no group and
    nothing committed. The broker answers a fetch as soon as a record (or a commit marker) is
    there, so the wait bounds only idle polling and how soon a newly added topic is fetched."""
    return Consumer(
        {
            **_common(settings, f"{settings.worker_id}-relay"),
            "group.id": f"{settings.app_id}-relay-unused",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "fetch.wait.max.ms": 100,
            "fetch.min.bytes": 1,
            "max.partition.fetch.bytes": MAX_VALUE_BYTES + 64 * 1024,
            # what is fetched ahead of the clients: a reader that pauses its partitions drops
            # its part of it and fetches it again on resuming
            "queued.max.messages.kbytes": 16 * 1024,
        }
    )


def offsets_admin(settings: Settings) -> AdminClient:
    """Asks for topics' last stable offsets (where the relay's live reading starts)."""
    return AdminClient(_common(settings, f"{settings.worker_id}-relay-offsets"))


def plain_producer(settings: Settings, client_id: str) -> Producer:
    """A producer outside any transaction (tick requests): idempotent, sent at once."""
    return Producer(
        {
            **_common(settings, f"{settings.worker_id}-{client_id}"),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 0,
            "partitioner": "murmur2_random",
        }
    )


def status_producer(settings: Settings) -> Producer:
    """The worker's reports and periodic status events, outside any transaction: with many
    subscriptions a worker writes a report of all of them every second and an event per
    subscription every ten, which librdkafka queues in C (aiokafka built each record in Python
    on the event loop: about 4 % of the loop with 1,000 subscriptions). A record waits up to
    5 ms for others to share its request."""
    return Producer(
        {
            **_common(settings, f"{settings.worker_id}-status"),
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": MAX_VALUE_BYTES + 64 * 1024,
            "compression.type": "none",  # as the pipeline's producer
        }
    )


# ---- the asyncio clients of the worker's services (aiokafka) --------------------------------
#
# The worker's other Kafka clients stay on aiokafka, where it is still the better choice: they
# live on the event loop beside the web views and carry little traffic (the subscription and
# worker-report followers, a relay client's own catch-up reader, topic administration), and
# some are opened per request; a librdkafka client starts a thread per broker of its own plus
# a main thread, an aiokafka client is a few coroutines. The relay's live reading, which
# carries every frame, is one librdkafka consumer (``live_reader``), and the reports and
# status events, which grow with the subscriptions, one librdkafka producer
# (``status_producer``).


FOLLOWER_FETCH_WAIT_MS = 500
"""How long a follower's fetch waits at the broker for a record. A record is returned as soon
as it is there (committed, for a read_committed follower), so this bounds only an idle fetch,
and each one costs the event loop a round trip through aiokafka; a follower reads one
partition, so no other partition's fetch holds its records back either."""


def follower(settings: Settings, *, read_committed: bool) -> AIOKafkaConsumer:
    """Reads one compacted topic from the start without a group (subscriptions, reports)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        fetch_max_wait_ms=FOLLOWER_FETCH_WAIT_MS,
        group_id=None,
    )


def webhook_reader(settings: Settings, group_id: str) -> AIOKafkaConsumer:
    """Reads a webhook subscription's topic in the webhook's own group: the group hands the
    topic's one partition to one worker at a time, and its committed offset is what the
    webhook acknowledged. ``read_committed``; nothing committed but by the dispatcher."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_max_wait_ms=500,
        session_timeout_ms=int(settings.session_timeout.total_seconds() * 1000),
        heartbeat_interval_ms=max(int(settings.session_timeout.total_seconds() * 1000) // 3, 100),
    )


def relay_reader(settings: Settings, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
    """Reads a subscriber topic for one relay client that starts behind what the shared ring
    holds, until it catches up: ``read_committed``, no group. A long poll: the broker answers
    as soon as a record (or a commit marker) is there, so the wait bounds only idle polling."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=fetch_max_wait_ms,
        group_id=None,
    )


def offsets_reader(settings: Settings, *, read_committed: bool = False) -> AIOKafkaConsumer:
    """Asks for topics' first or last offsets, fetching nothing (a cursor older than the
    retention; how far a followed topic goes)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        group_id=None,
    )


def service_producer(
    settings: Settings, *, idempotent: bool, linger_ms: int = 0
) -> AIOKafkaProducer:
    """Writes records outside any transaction on the event loop (the demo feed)."""
    if idempotent:
        return AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
        )
    return AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=linger_ms)


def store_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    """The subscription store's transactional producer: a change to a subscription, its
    audit entry and its status event are one transaction. The id is kept in the worker's data
    folder, so a restarted worker aborts at once what its previous incarnation left open; the
    transaction timeout is the pipeline's, so a killed worker's open transaction holds up the
    ``read_committed`` followers for seconds at most."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        enable_idempotence=True,
        acks="all",
    )


def admin(settings: Settings, request_timeout_ms: int = 40_000) -> AIOKafkaAdminClient:
    """Creates and describes topics."""
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=request_timeout_ms
    )


def take_fetched(consumer: Consumer, limit: int, wait: float) -> list[Message]:
    """Up to ``limit`` records the consumer has fetched already, at once; if it has none, wait
    up to ``wait`` seconds for the first and take it with whatever came alongside.
    (``consume`` with a timeout holds what it has until it has ``limit`` records or the
    timeout passes, so every record of a short batch would wait out the whole timeout.)"""
    messages = consumer.consume(limit, 0)
    if messages or wait <= 0:
        return messages
    first = consumer.poll(wait)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, 0)]
