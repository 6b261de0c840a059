"""The real-time relay: one reader per subscription per worker, fanned out to its clients.

Every transport (WebSocket, SSE, gRPC) reads a subscription through :class:`RelayHub`. The hub
reads the subscription's own topic (``read_committed``, so only confirmations whose transaction
committed; one consumer, :class:`~.live_feed.LiveFeed`, for all of them), keeps the most recent
records in a ring, and copies each record into the bounded queue of every client attached to
it. A client that does not keep up overflows its queue and
is dropped, without ever slowing the reader, the other clients or the pipeline.

Cursors are positions in the subscription topic: for each partition the next offset to read,
written ``"0:1234"`` (``"0:1234,1:88"`` with more partitions). The cursor sent with a record
is the position just after it, so reconnecting with the last cursor seen continues with no gap
and no repeat. A client that starts before what the ring holds catches up with a reader of its
own, then attaches to the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from execdist.codecs.input import InputDecoder
from execdist.codecs.output import encode_json
from execdist.domain.errors import ExecDistError
from execdist.infra import clients
from execdist.metrics import Metrics
from execdist.relay.live_feed import LiveFeed, LiveRecord
from execdist.relay.snapshot import take_snapshot
from execdist.settings import Settings
from execdist.topics import SUBSCRIBER_PREFIX

log = logging.getLogger(__name__)

RING_CAPACITY = 20_000
"""Recent records kept per subscription for clients that reconnect or start slightly behind."""
CLIENT_QUEUE = 2_000
"""Frames a client may have waiting before it counts as too slow and is closed."""
IDLE_READER_S = 30.0
"""How long a subscription's reader lives on after its last client left."""
DRAIN_GRACE_S = 1.0
"""How long the shared reader waits for a lagging client before dropping it as too slow."""
READ_BATCH = 100
"""Records the shared reader hands out before it lets the clients' senders run."""
INBOX_LIMIT = 2_000
"""Records a reader may have waiting for its clients before it pauses its partitions in the
shared feed."""
HEARTBEAT_S = 5
"""Seconds without a record after which a client's sender is woken to send a heartbeat."""
FETCH_WAIT_MS = 500
"""Longest the fetch of a client's own catch-up reader waits at the broker for data."""


class InvalidCursor(ExecDistError):
    """A ``from`` value that is not latest, earliest or a cursor of this subscription."""


CONFLATE_MS = (50, 5000)
"""The conflation intervals a client may ask for, in milliseconds."""


class InvalidConflation(ExecDistError):
    """A ``conflate`` value outside :data:`CONFLATE_MS`."""


def parse_conflate(raw: str | int | None) -> int | None:
    """A client's ``conflate`` (milliseconds) or ``None`` when it asks for none."""
    if raw is None or raw == "":
        return None
    low, high = CONFLATE_MS
    text = str(raw)
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidConflation(
            f"conflate must be a whole number of milliseconds from {low} to {high}, got {text!r}"
        )
    return int(text)


class CursorExpired(ExecDistError):
    """A cursor older than what the topic still holds (retention deleted records after it):
    the client must start again from ``earliest`` (or a snapshot), never silently later."""

    def __init__(self, earliest: str) -> None:
        super().__init__(f"the cursor is older than the topic's earliest record ({earliest})")
        self.earliest = earliest

    def frame(self) -> bytes:
        """The contract's error frame."""
        return orjson.dumps({"type": "error", "code": "cursor_expired", "earliest": self.earliest})


Position = dict[int, int]


def format_cursor(position: Mapping[int, int]) -> str:
    return ",".join(f"{partition}:{offset}" for partition, offset in sorted(position.items()))


def parse_cursor(text: str, partitions: int) -> Position:
    position: Position = {}
    try:
        for part in text.split(","):
            partition, offset = part.split(":")
            position[int(partition)] = int(offset)
    except ValueError:
        raise InvalidCursor(
            f"from must be 'latest', 'earliest' or a cursor like '0:42', got {text!r}"
        ) from None
    if set(position) != set(range(partitions)) or min(position.values()) < 0:
        raise InvalidCursor(
            f"the cursor must give a non-negative offset for each of the {partitions} "
            f"partitions of this subscription, got {text!r}"
        )
    return position


@dataclass(frozen=True)
class SnapshotFrames:
    """A snapshot for one client: the latest record of every order, in ``sub_seq`` order, as
    JSON, and where live delivery goes on."""

    records: list[tuple[int, bytes]]
    """``(sub_seq, JSON value)`` per order."""
    cursor: str
    sub_seq: int
    """The highest ``sub_seq`` the snapshot covers (0 for an empty topic): live records
    follow from the next one."""

    def websocket_messages(self) -> list[bytes]:
        return [
            b'{"type":"snapshot","sub_seq":%d,"data":%s}' % (sub_seq, value)
            for sub_seq, value in self.records
        ]

    def end(self) -> dict[str, object]:
        """The ``snapshot_end`` frame."""
        return {
            "type": "snapshot_end",
            "cursor": self.cursor,
            "sub_seq": self.sub_seq,
            "orders": len(self.records),
        }


class Frame:
    """One confirmation for a client: the cursor after it and its JSON bytes.

    A record read live is one ``Frame`` shared by every client of the subscription that is in
    step with the shared reader, so its WebSocket message is built once per record, not once
    per client.
    """

    __slots__ = ("_message", "_wire", "cursor", "folded", "value")

    def __init__(self, cursor: str, value: bytes, folded: list[int] | None = None) -> None:
        self.cursor = cursor
        self.value = value
        self.folded = folded
        """For a conflated frame standing for several records: the sub_seq of each, its own
        last; ``None`` otherwise."""
        self._message: bytes | None = None
        self._wire: bytes | None = None

    def __repr__(self) -> str:
        return f"Frame(cursor={self.cursor!r}, value={self.value!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.cursor, self.value) == (other.cursor, other.value)

    def __hash__(self) -> int:
        return hash((self.cursor, self.value))

    def data(self) -> object:
        return orjson.loads(self.value)

    def websocket_message(self) -> bytes:
        """The UTF-8 text of the WebSocket frame: built on first use, then reused."""
        if self._message is None:
            sub_seq = sub_seq_of(self.value)
            self._message = (
                b'{"type":"confirmation","cursor":"'
                + self.cursor.encode()
                + (b'","data":' if sub_seq is None else b'","sub_seq":%d,"data":' % sub_seq)
                + self.value
                + (b"" if self.folded is None else b',"folded":' + orjson.dumps(self.folded))
                + b"}"
            )
        return self._message

    def websocket_wire(self) -> bytes:
        """The whole WebSocket frame as it goes on the wire (a final, unmasked text frame,
        uncompressed): built once, then written as it is to every client in step."""
        if self._wire is None:
            self._wire = websocket_text_frame(self.websocket_message())
        return self._wire

    def value_with_folded(self) -> bytes:
        """The record's JSON, with ``"folded"`` as its last key when the frame is conflated
        (the form of an SSE event's data)."""
        if self.folded is None:
            return self.value
        return self.value[:-1] + b',"folded":' + orjson.dumps(self.folded) + b"}"


_SUB_SEQ_KEY = b'"sub_seq":'


def websocket_text_frame(payload: bytes) -> bytes:
    """RFC 6455: FIN and the text opcode, the payload length (7 bits, or 126 and 16 bits, or
    127 and 64 bits; a server's frames are not masked), then the payload."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


async def json_for_clients(decoder: InputDecoder, value: bytes) -> bytes:
    """Clients always get JSON; an Avro subscription's records are decoded for them."""
    if value[:1] != b"\x00":
        return value
    return encode_json(await decoder.decode(value))


def sub_seq_of(value: bytes) -> int | None:
    """The ``sub_seq`` of a subscriber record's JSON, read from its end, where it always is
    (``None`` for a record written before subscriptions were numbered)."""
    tail = value[-40:]
    at = tail.rfind(_SUB_SEQ_KEY)
    if at < 1 or tail[at - 1 : at] not in (b",", b"{"):
        return None
    digits = tail[at + len(_SUB_SEQ_KEY) : -1]
    return int(digits) if digits.isdigit() and tail.endswith(b"}") else None


@dataclass(eq=False)
class RelayClient:
    """One connected client of a subscription."""

    position: Position
    queue: asyncio.Queue[Frame | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    limit: int = CLIENT_QUEUE
    too_slow: bool = False
    shutting_down: bool = False
    catch_up: asyncio.Task[None] | None = None
    fed: bool = False
    """Whether a record was queued since the hub's last heartbeat tick."""
    quiet_ticks: int = 0
    direct: Callable[[list[Frame]], bool] | None = None
    """Writes frames to the client at once, in one write, if it can take them now (its
    connection's buffer is not backed up); ``False`` otherwise. Set by a sender that can
    write without waiting (the WebSocket one); then frames with nothing before them are
    written as they are offered, with no queue and no task switch, and only a backlog goes
    through the queue."""
    sending: bool = False
    """The sender holds frames taken from the queue that are not written yet."""
    held: list[Frame] | None = None
    """While the shared reader hands over one fetched batch (:meth:`hold`): the frames to
    write directly once it is over (:meth:`write_held`), so a client gets the records of one
    fetch in one write, not a write (a system call) per record."""

    def offer(
        self,
        partition: int,
        offset: int,
        value: bytes,
        shared: Frame | None = None,
        shared_position: Position | None = None,
    ) -> None:
        """Queue a record unless the client has it already; mark it too slow if full.

        ``shared`` is the reader's frame for this record, whose cursor is ``shared_position``:
        a client whose position after the record is the same takes that frame as it is.
        """
        if self.too_slow or offset < self.position.get(partition, 0):
            return
        self.position[partition] = offset + 1
        if shared is None or self.position != shared_position:
            shared = Frame(format_cursor(self.position), value)
        self.fed = True
        if self.direct is not None and not self.sending and self.queue.empty():
            held = self.held
            if held is not None:
                held.append(shared)
                return
            if self.direct([shared]):
                return
        self._enqueue(shared)

    def _enqueue(self, frame: Frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.give_up()

    def hold(self) -> None:
        """The shared reader starts handing over a fetched batch: keep the frames that
        would be written at once until :meth:`write_held`."""
        self.held = []

    def write_held(self) -> None:
        """Write the frames kept since :meth:`hold` in one write, or queue them, in order, if
        the connection is backed up (or the sender went away) meanwhile."""
        held, self.held = self.held, None
        if not held:
            return
        direct = self.direct
        if direct is not None and not self.sending and self.queue.empty() and direct(held):
            return
        for frame in held:
            self._enqueue(frame)

    def give_up(self) -> None:
        """Mark the client too slow and wake its sender so it notices and closes."""
        self.too_slow = True
        with contextlib.suppress(asyncio.QueueFull, asyncio.QueueEmpty):
            if self.queue.full():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def next(self) -> Frame | None:
        """The next frame; ``None`` wakes the sender up without one: it closes the client when
        ``too_slow`` or ``shutting_down`` is set, else it sends a heartbeat (the hub queues a
        ``None`` after ``HEARTBEAT_S`` without a record, so no sender keeps a timer of its own).
        """
        if not self.queue.empty():
            return self.queue.get_nowait()
        return await self.queue.get()

    async def next_batch(self, limit: int) -> list[Frame]:
        """Up to ``limit`` frames that are waiting, at least one, or none when it is time for
        a heartbeat. Check ``too_slow`` and ``shutting_down`` after each call, as with
        :meth:`next`."""
        first = await self.next()
        if first is None:
            return []
        batch = [first]
        queue = self.queue
        while len(batch) < limit and not queue.empty():
            frame = queue.get_nowait()
            if frame is None:
                break
            batch.append(frame)
        return batch

    def tick(self) -> None:
        """Called once a second by the hub: queue a heartbeat wake-up after ``HEARTBEAT_S``
        without a record."""
        if self.fed:
            self.fed = False
            self.quiet_ticks = 0
            return
        self.quiet_ticks += 1
        if self.quiet_ticks >= HEARTBEAT_S and self.queue.empty():
            self.quiet_ticks = 0
            self.queue.put_nowait(None)


@dataclass(eq=False)
class ConflatingClient(RelayClient):
    """A client that asked for ``conflate=<ms>``: at most one frame per order per interval.

    Records are not queued: each order keeps its latest record and the ``sub_seq`` of every
    record it stands for, so what waits is bounded by the orders that changed, and a client
    that falls behind is conflated harder (its next flush simply stands for more), never
    closed for slowness. A flush sends every waiting order's frame in ``sub_seq`` order; each
    frame's cursor is the position after its latest record.
    """

    interval_s: float = 1.0
    pending: dict[bytes, Frame] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat_due: bool = False
    next_flush: float = 0.0
    ready: deque[Frame] = field(default_factory=deque)

    def offer(
        self,
        partition: int,
        offset: int,
        value: bytes,
        shared: Frame | None = None,
        shared_position: Position | None = None,
    ) -> None:
        if self.too_slow or offset < self.position.get(partition, 0):
            return
        self.position[partition] = offset + 1
        order = _order_key(value)
        sub_seq = sub_seq_of(value) or 0
        earlier = self.pending.get(order)
        folded = [sub_seq] if earlier is None else [*(earlier.folded or ()), sub_seq]
        self.pending[order] = Frame(format_cursor(self.position), value, folded)
        self.fed = True
        self.wake.set()

    def give_up(self) -> None:
        self.too_slow = True
        self.wake.set()

    def tick(self) -> None:
        if self.fed:
            self.fed = False
            self.quiet_ticks = 0
            return
        self.quiet_ticks += 1
        if self.quiet_ticks >= HEARTBEAT_S and not self.pending:
            self.quiet_ticks = 0
            self.heartbeat_due = True
            self.wake.set()

    async def next(self) -> Frame | None:
        if not self.ready:
            self.ready.extend(await self._flush())
        return self.ready.popleft() if self.ready else None

    async def next_batch(self, limit: int) -> list[Frame]:
        if not self.ready:
            self.ready.extend(await self._flush())
        return [self.ready.popleft() for _ in range(min(limit, len(self.ready)))]

    async def _flush(self) -> list[Frame]:
        """Wait until the interval since the last flush is over and something is waiting;
        then every waiting order's frame (a single record's without ``folded``). Empty for a
        heartbeat or when the client is to be closed."""
        loop = asyncio.get_running_loop()
        wait = self.next_flush - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        while not self.pending and not self.too_slow and not self.heartbeat_due:
            self.wake.clear()
            await self.wake.wait()
        self.heartbeat_due = False
        frames = sorted(self.pending.values(), key=lambda frame: (frame.folded or [0])[-1])
        self.pending = {}
        for frame in frames:
            if frame.folded is not None and len(frame.folded) == 1:
                frame.folded = None
        self.next_flush = loop.time() + self.interval_s
        return frames


def _order_key(value: bytes) -> bytes:
    """The order a record is about (its ``order_id``), for conflation."""
    try:
        order_id = orjson.loads(value).get("order_id")
    except (orjson.JSONDecodeError, AttributeError):
        return value  # not a confirmation: never folded with another
    return str(order_id).encode()


class SubscriptionReader:
    """The one shared reader of a subscription topic on this worker: its records come from the
    worker's :class:`~.live_feed.LiveFeed`."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        partitions: int,
        decoder: InputDecoder,
        feed: LiveFeed,
    ) -> None:
        self._settings = settings
        self._decoder = decoder
        self._feed = feed
        self.topic = topic
        self.partitions = partitions
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._ring: deque[tuple[int, int, bytes]] = deque(maxlen=RING_CAPACITY)
        self.ring_start: Position = {}
        self.position: Position = {}
        self.clients: set[RelayClient] = set()
        self._inbox: deque[LiveRecord] = deque()
        self._arrived = asyncio.Event()
        self._paused = False
        self._task: asyncio.Task[None] | None = None
        self.idle_since: float | None = None
        self.started = asyncio.Event()

    def _new_consumer(self) -> AIOKafkaConsumer:
        # a client's own reader while it catches up to the shared ring
        return clients.relay_reader(self._settings, FETCH_WAIT_MS)

    async def start(self) -> None:
        ends = await self._feed.end_offsets(self.topic, self.partitions)
        for partition in range(self.partitions):
            self.position[partition] = ends[partition]
            self.ring_start[partition] = ends[partition]
        self._task = asyncio.create_task(self._read())
        self._feed.add(self.topic, dict(self.position), self._receive)
        self.started.set()

    async def stop(self) -> None:
        self._feed.remove(self.topic)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _receive(self, records: list[LiveRecord]) -> None:
        """Records of this topic from the feed, in offset order (on the event loop)."""
        self._inbox.extend(records)
        self._arrived.set()
        if not self._paused and len(self._inbox) > INBOX_LIMIT:
            self._paused = True  # the clients are behind: fetch nothing more meanwhile
            self._feed.pause(self.topic)

    async def _read(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._inbox:
                batch = [self._inbox.popleft() for _ in range(min(READ_BATCH, len(self._inbox)))]
                await self._hand_over(batch)
                await self._let_clients_drain()
            if self._paused:
                self._paused = False
                self._feed.resume(self.topic)

    async def _hand_over(self, batch: list[LiveRecord]) -> None:
        """Offer a batch of records to the clients: each client in step gets its frames of the
        batch in one write. A record the reader already has (read again after a pause) is
        skipped."""
        holding = tuple(self.clients)
        for client in holding:
            client.hold()
        try:
            for partition, offset, raw in batch:
                if offset < self.position.get(partition, 0):
                    continue
                value = await self.as_json(raw)
                self._append(partition, offset, value)
        finally:
            for client in holding:
                client.write_held()

    async def _let_clients_drain(self) -> None:
        """Give the clients' senders time to catch up before the next batch.

        A client that is more than half full and drains nothing at all for
        ``DRAIN_GRACE_S`` has stalled: it is marked too slow (its sender closes it with
        1013), so it holds the others up only once and only that long. A client that drains,
        however slowly, is waited for up to the same time; if it cannot keep up with the
        stream at all, its queue overflows and it is closed the same way.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_GRACE_S
        started: dict[RelayClient, int] = {}
        while True:
            behind = [c for c in self.clients if not c.too_slow and c.queue.qsize() > c.limit // 2]
            if not behind:
                return
            for client in behind:
                started.setdefault(client, client.queue.qsize())
            if loop.time() > deadline:
                for client in behind:
                    if client.queue.qsize() >= started[client]:
                        client.give_up()
                return
            await asyncio.sleep(0.002)

    async def as_json(self, value: bytes) -> bytes:
        return await json_for_clients(self._decoder, value)

    def _append(self, partition: int, offset: int, value: bytes) -> None:
        if len(self._ring) == self._ring.maxlen:
            dropped_partition, dropped_offset, _ = self._ring[0]
            self.ring_start[dropped_partition] = dropped_offset + 1
        self._ring.append((partition, offset, value))
        self.position[partition] = offset + 1
        if not self.clients:
            return
        position = dict(self.position)
        frame = Frame(format_cursor(position), value)
        for client in tuple(self.clients):
            client.offer(partition, offset, value, frame, position)

    def covers(self, client: RelayClient) -> bool:
        """True when the ring holds everything from the client's position on, and what it
        would replay fits in the client's queue."""
        position = client.position
        if not all(position[p] >= self.ring_start.get(p, 0) for p in range(self.partitions)):
            return False
        backlog = sum(max(self.position[p] - position[p], 0) for p in range(self.partitions))
        return backlog <= client.limit - client.queue.qsize()

    def attach(self, client: RelayClient) -> None:
        """Replay what the ring holds past the client's position, then feed it live."""
        for partition, offset, value in self._ring:
            client.offer(partition, offset, value)
        self.clients.add(client)
        self.idle_since = None

    async def catch_up(self, client: RelayClient) -> None:
        """Read with a consumer of the client's own until the shared ring covers it, then
        attach (in the same step, so the ring cannot move on in between)."""
        consumer = self._new_consumer()
        await consumer.start()
        try:
            consumer.assign(self._tps)
            for tp in self._tps:
                consumer.seek(tp, client.position[tp.partition])
            while not client.too_slow:
                if self.covers(client):
                    self.attach(client)
                    return
                # never more than half the client's queue at once: a client that is behind but
                # reads fast must catch up, not be closed as too slow by its own backlog
                batch = await consumer.getmany(
                    timeout_ms=200, max_records=max(min(500, client.limit // 2), 1)
                )
                for tp, records in batch.items():
                    for record in records:
                        value = await self.as_json(record.value)
                        client.offer(tp.partition, record.offset, value)
                for tp in self._tps:
                    moved = await consumer.position(tp)
                    if moved > client.position[tp.partition]:
                        client.position[tp.partition] = moved
                # let the client drain: catching up must not overflow a healthy client
                while client.queue.qsize() > client.limit // 2 and not client.too_slow:
                    await asyncio.sleep(0.01)
        finally:
            await consumer.stop()


class RelayHub(Service):
    """All shared readers of this worker, created on demand, stopped when idle."""

    def __init__(
        self, settings: Settings, decoder: InputDecoder, metrics: Metrics, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._decoder = decoder
        self._metrics = metrics
        self._feed = LiveFeed(settings)
        self._readers: dict[str, SubscriptionReader] = {}
        self._clients: dict[RelayClient, str] = {}
        """Every connected client, with the topic it reads."""
        self._starting: dict[str, asyncio.Lock] = {}
        self._exported: set[str] = set()
        """Subscriptions whose client gauges are set."""

    async def on_stop(self) -> None:
        for reader in list(self._readers.values()):
            for client in list(reader.clients):
                client.shutting_down = True  # its sender closes it as "going away"
                client.give_up()
            await reader.stop()
        self._readers.clear()
        await self._feed.stop()

    @Service.timer(1.0)
    async def _heartbeats(self) -> None:
        for client in self._clients:
            client.tick()

    @Service.timer(1.0)
    async def _export_lag_every_second(self) -> None:
        self.export_lag()

    def export_lag(self) -> None:
        """Per subscription with clients here: how many, and how far behind the furthest-behind
        one is (records queued for it plus records the shared reader has and it has not)."""
        clients: dict[str, int] = {}
        lag: dict[str, int] = {}
        for client, topic in self._clients.items():
            reader = self._readers.get(topic)
            read = {} if reader is None else reader.position
            behind = client.queue.qsize() + sum(
                max(read.get(partition, offset) - offset, 0)
                for partition, offset in client.position.items()
            )
            subscription = topic.removeprefix(SUBSCRIBER_PREFIX)
            clients[subscription] = clients.get(subscription, 0) + 1
            lag[subscription] = max(lag.get(subscription, 0), behind)
        for gone in self._exported - clients.keys():
            self._metrics.relay_clients.remove(gone)
            self._metrics.relay_lag.remove(gone)
        for subscription, count in clients.items():
            self._metrics.relay_clients.labels(subscription).set(count)
            self._metrics.relay_lag.labels(subscription).set(lag[subscription])
        self._exported = set(clients)

    @Service.timer(5.0)
    async def _stop_idle_readers(self) -> None:
        loop = asyncio.get_running_loop()
        for topic, reader in list(self._readers.items()):
            if reader.clients:
                continue
            if reader.idle_since is None:
                reader.idle_since = loop.time()
            elif loop.time() - reader.idle_since > IDLE_READER_S:
                del self._readers[topic]
                self._starting.pop(topic, None)
                await reader.stop()

    async def _reader(self, topic: str, partitions: int) -> SubscriptionReader:
        # one lock per topic: readers of different subscriptions start side by side (a
        # start is a consumer start and a look-up of the end offsets)
        async with self._starting.setdefault(topic, asyncio.Lock()):
            reader = self._readers.get(topic)
            if reader is None:
                reader = SubscriptionReader(
                    self._settings, topic, partitions, self._decoder, self._feed
                )
                await reader.start()
                self._readers[topic] = reader
            return reader

    async def connect(
        self, topic: str, partitions: int, start: str, conflate_ms: int | None = None
    ) -> RelayClient:
        """A client of ``topic`` starting at ``start`` (latest, earliest or a cursor); raises
        :class:`CursorExpired` for a cursor the topic can no longer be read from."""
        position = {} if start in ("latest", "earliest") else parse_cursor(start, partitions)
        reader = await self._reader(topic, partitions)
        if start == "latest":
            position = dict(reader.position)
        elif start == "earliest":
            position = await self._beginnings(topic, partitions)
        limit = self._settings.relay_client_queue
        client = (
            RelayClient(position=position, queue=asyncio.Queue(limit), limit=limit)
            if conflate_ms is None
            else ConflatingClient(position=position, interval_s=conflate_ms / 1000)
        )
        if not reader.covers(client) and start not in ("latest", "earliest"):
            beginnings = await self._beginnings(topic, partitions)
            if any(position[p] < beginnings[p] for p in range(partitions)):
                raise CursorExpired(format_cursor(beginnings))
        self._clients[client] = topic
        if reader.covers(client):
            reader.attach(client)
        else:
            client.catch_up = asyncio.create_task(reader.catch_up(client))
        return client

    async def snapshot(self, topic: str, partitions: int) -> SnapshotFrames:
        """The latest record of every order on ``topic`` and the cursor to go on live from
        (:mod:`.snapshot`); raises :class:`~.snapshot.SnapshotUnavailable` when the topic
        cannot be read in time."""
        taken = await asyncio.to_thread(take_snapshot, self._settings, topic, partitions)
        records = []
        for value in taken.latest:
            json_value = await json_for_clients(self._decoder, value)
            records.append((sub_seq_of(json_value) or 0, json_value))
        records.sort(key=lambda record: record[0])
        last = records[-1][0] if records else 0
        return SnapshotFrames(records, format_cursor(taken.position), last)

    def disconnect(self, topic: str, client: RelayClient) -> None:
        known = self._clients.pop(client, None) is not None
        if known and client.too_slow and not client.shutting_down:
            subscription = topic.removeprefix(SUBSCRIBER_PREFIX)
            self._metrics.relay_slow_clients.labels(subscription).inc()
        if client.catch_up is not None:
            client.catch_up.cancel()
        reader = self._readers.get(topic)
        if reader is not None:
            reader.clients.discard(client)

    async def _beginnings(self, topic: str, partitions: int) -> Position:
        consumer = clients.offsets_reader(self._settings)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            beginnings = await consumer.beginning_offsets(tps)
            return {tp.partition: beginnings[tp] for tp in tps}
        finally:
            await consumer.stop()
