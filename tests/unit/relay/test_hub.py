"""The relay's per-client bookkeeping, without a broker: shared frames, batches, heartbeats."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from execdist.codecs.input import InputDecoder
from execdist.metrics import Metrics
from execdist.relay.hub import (
    HEARTBEAT_S,
    INBOX_LIMIT,
    Frame,
    RelayClient,
    RelayHub,
    SubscriptionReader,
    format_cursor,
    websocket_text_frame,
)
from execdist.relay.live_feed import LiveFeed
from execdist.settings import Settings
from execdist.topics import subscriber_topic


def client(position: dict[int, int], limit: int = 10) -> RelayClient:
    return RelayClient(position=dict(position), queue=asyncio.Queue(limit), limit=limit)


def test_websocket_message_is_the_contract_frame_and_built_once() -> None:
    frame = Frame("0:5,1:7", b'{"exec_id":"E1"}')
    message = frame.websocket_message()
    assert orjson.loads(message) == {
        "type": "confirmation",
        "cursor": "0:5,1:7",
        "data": {"exec_id": "E1"},
    }
    assert frame.websocket_message() is message


def test_clients_in_step_with_the_reader_share_its_frame() -> None:
    reader_position = {0: 5, 1: 7}
    shared = Frame(format_cursor(reader_position), b"{}")
    first, second = client({0: 4, 1: 7}), client({0: 4, 1: 7})
    for each in (first, second):
        each.offer(0, 4, b"{}", shared, reader_position)
    assert first.queue.get_nowait() is shared
    assert second.queue.get_nowait() is shared


def test_a_client_ahead_on_another_partition_gets_its_own_cursor() -> None:
    # e.g. right after a catch-up: its own consumer went past the reader on partition 1
    reader_position = {0: 5, 1: 7}
    shared = Frame(format_cursor(reader_position), b"{}")
    ahead = client({0: 4, 1: 9})
    ahead.offer(0, 4, b"{}", shared, reader_position)
    frame = ahead.queue.get_nowait()
    assert frame is not shared
    assert frame.cursor == "0:5,1:9"


def test_a_record_the_client_has_is_not_queued_again() -> None:
    behind = client({0: 6})
    behind.offer(0, 5, b"{}")
    assert behind.queue.empty()


def test_a_full_queue_marks_the_client_too_slow_and_wakes_its_sender() -> None:
    slow = client({0: 0}, limit=2)
    for offset in range(3):
        slow.offer(0, offset, b"{}")
    assert slow.too_slow
    assert None in [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]


async def test_next_batch_takes_what_is_waiting_up_to_the_limit() -> None:
    busy = client({0: 0})
    for offset in range(5):
        busy.offer(0, offset, b"{}")
    first = await busy.next_batch(3)
    second = await busy.next_batch(3)
    assert [f.cursor for f in first] == ["0:1", "0:2", "0:3"]
    assert [f.cursor for f in second] == ["0:4", "0:5"]


async def test_a_heartbeat_wake_up_comes_after_heartbeat_s_quiet_ticks_only() -> None:
    quiet = client({0: 0})
    for _ in range(HEARTBEAT_S - 1):
        quiet.tick()
    assert quiet.queue.empty()
    quiet.tick()
    assert await quiet.next_batch(10) == []  # nothing to send: time for a heartbeat
    assert not quiet.too_slow


def test_a_record_resets_the_quiet_ticks() -> None:
    fed = client({0: 0})
    for _ in range(HEARTBEAT_S - 1):
        fed.tick()
    fed.offer(0, 0, b"{}")
    fed.tick()  # the tick that sees the record
    for _ in range(HEARTBEAT_S - 1):
        fed.tick()
    assert fed.queue.qsize() == 1  # the record, no heartbeat yet


def _samples(metrics: Metrics, name: str) -> dict[str, float]:
    return {
        sample.labels["subscription"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_lag_per_subscription_is_its_furthest_behind_client_and_leaves_with_them() -> None:
    metrics = Metrics()
    hub = RelayHub(Settings(), InputDecoder(None), metrics)
    topic = subscriber_topic("sub-1")
    reader = SubscriptionReader(Settings(), topic, 2, InputDecoder(None), LiveFeed(Settings()))
    reader.position = {0: 100, 1: 50}
    hub._readers[topic] = reader
    in_step, behind = client({0: 100, 1: 50}), client({0: 90, 1: 45})
    behind.offer(0, 90, b"{}")  # queued, not yet sent: still behind
    hub._clients.update({in_step: topic, behind: topic})

    hub.export_lag()
    assert _samples(metrics, "execdist_relay_lag_records") == {"sub-1": 15.0}
    assert _samples(metrics, "execdist_relay_clients") == {"sub-1": 2.0}

    hub.disconnect(topic, in_step)
    hub.disconnect(topic, behind)
    hub.export_lag()
    assert _samples(metrics, "execdist_relay_lag_records") == {}
    assert _samples(metrics, "execdist_relay_clients") == {}


def test_a_client_closed_as_too_slow_is_counted_once() -> None:
    metrics = Metrics()
    hub = RelayHub(Settings(), InputDecoder(None), metrics)
    topic = subscriber_topic("sub-2")
    slow, leaving = client({0: 0}, limit=1), client({0: 0})
    hub._clients.update({slow: topic, leaving: topic})
    slow.offer(0, 0, b"{}")
    slow.offer(0, 1, b"{}")
    assert slow.too_slow
    hub.disconnect(topic, slow)
    hub.disconnect(topic, slow)  # a transport may say it twice
    hub.disconnect(topic, leaving)
    assert _samples(metrics, "execdist_relay_slow_clients_total") == {"sub-2": 1.0}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_a_frame_goes_on_the_wire_as_one_final_unmasked_text_frame(size: int) -> None:
    payload = b"x" * size
    wire = websocket_text_frame(payload)
    assert wire[0] == 0x81  # FIN, text
    assert wire[1] & 0x80 == 0  # a server does not mask
    if size < 126:
        assert (wire[1], wire[2:]) == (size, payload)
    elif size < 65536:
        assert wire[1] == 126 and int.from_bytes(wire[2:4], "big") == size
        assert wire[4:] == payload
    else:
        assert wire[1] == 127 and int.from_bytes(wire[2:10], "big") == size
        assert wire[10:] == payload


async def test_a_client_in_step_is_written_at_once_and_a_backlog_keeps_the_order() -> None:
    written: list[bytes] = []
    accepting = True

    def direct(frames: list[Frame]) -> bool:
        if accepting:
            written.append(b"".join(frame.websocket_wire() for frame in frames))
        return accepting

    client = RelayClient(position={0: 0})
    client.direct = direct
    client.offer(0, 0, b'{"n":0}')
    assert len(written) == 1 and client.queue.empty()  # no queue, no task switch
    accepting = False  # the connection backs up: frames wait in the queue, in order
    client.offer(0, 1, b'{"n":1}')
    accepting = True
    client.offer(0, 2, b'{"n":2}')  # not written ahead of the one waiting
    assert len(written) == 1
    batch = await client.next_batch(10)
    assert [frame.value for frame in batch] == [b'{"n":1}', b'{"n":2}']
    client.sending = True  # the sender holds them: later frames still queue behind
    client.offer(0, 3, b'{"n":3}')
    assert len(written) == 1 and client.queue.qsize() == 1


async def test_a_fetched_batch_goes_to_a_client_in_step_in_one_write_and_in_order() -> None:
    writes: list[list[bytes]] = []
    accepting = True

    def direct(frames: list[Frame]) -> bool:
        if accepting:
            writes.append([frame.value for frame in frames])
        return accepting

    client = RelayClient(position={0: 0})
    client.direct = direct
    client.hold()
    for n in range(3):
        client.offer(0, n, b'{"n":%d}' % n)
    assert writes == [] and client.queue.empty()  # held until the batch is handed over
    client.write_held()
    assert writes == [[b'{"n":0}', b'{"n":1}', b'{"n":2}']]
    client.write_held()  # nothing held: nothing written
    assert len(writes) == 1
    # the connection backs up during the next batch: its frames queue, in order, and later
    # frames wait behind them
    client.hold()
    client.offer(0, 3, b'{"n":3}')
    client.offer(0, 4, b'{"n":4}')
    accepting = False
    client.write_held()
    accepting = True
    client.offer(0, 5, b'{"n":5}')
    assert len(writes) == 1
    batch = await client.next_batch(10)
    assert [frame.value for frame in batch] == [b'{"n":3}', b'{"n":4}', b'{"n":5}']


async def test_the_shared_reader_writes_each_client_its_frames_of_a_fetch_at_once() -> None:
    reader = SubscriptionReader(
        Settings(), "execdist.sub.s1", 1, InputDecoder(None), LiveFeed(Settings())
    )
    writes: dict[str, list[int]] = {"a": [], "b": []}

    def direct_for(name: str) -> Callable[[list[Frame]], bool]:
        def direct(frames: list[Frame]) -> bool:
            writes[name].append(len(frames))
            return True

        return direct

    first, second = RelayClient(position={0: 0}), RelayClient(position={0: 2})
    first.direct, second.direct = direct_for("a"), direct_for("b")
    reader.clients = {first, second}
    reader.position = {0: 0}
    await reader._hand_over([(0, n, b'{"n":%d}' % n) for n in range(4)])
    assert writes == {"a": [4], "b": [2]}  # one write each; the second had two already
    assert first.held is None and second.held is None
    # a record read again (the feed resumes after the last record it polled) is not repeated
    await reader._hand_over([(0, 3, b'{"n":3}'), (0, 4, b'{"n":4}')])
    assert writes == {"a": [4, 1], "b": [2, 1]}


class RecordingFeed(LiveFeed):
    """The shared feed, with what readers ask of it recorded instead of sent to a consumer."""

    def __init__(self) -> None:
        super().__init__(Settings())
        self.asked: list[tuple[str, str]] = []

    def pause(self, topic: str) -> None:
        self.asked.append(("pause", topic))

    def resume(self, topic: str) -> None:
        self.asked.append(("resume", topic))


async def test_a_reader_whose_clients_are_behind_pauses_its_topic_until_they_catch_up() -> None:
    feed = RecordingFeed()
    topic = "execdist.sub.s1"
    reader = SubscriptionReader(Settings(), topic, 1, InputDecoder(None), feed)
    reader.position = {0: 0}
    written: list[bytes] = []

    def direct(frames: list[Frame]) -> bool:
        written.extend(frame.value for frame in frames)
        return True

    fed = RelayClient(position={0: 0})
    fed.direct = direct
    reader.clients = {fed}
    arrived = INBOX_LIMIT + 50
    reader._receive([(0, n, b'{"n":%d}' % n) for n in range(arrived)])
    assert feed.asked == [("pause", topic)]  # more waiting than the clients may be handed
    reading = asyncio.create_task(reader._read())
    try:
        async with asyncio.timeout(10):
            while feed.asked[-1][0] != "resume":
                await asyncio.sleep(0.01)
        assert feed.asked == [("pause", topic), ("resume", topic)]
        assert written == [b'{"n":%d}' % n for n in range(arrived)]  # each once, in order
        # records of the topic read again after the resume are not repeated
        reader._receive([(0, arrived - 1, b"{}"), (0, arrived, b'{"n":%d}' % arrived)])
        async with asyncio.timeout(10):
            while len(written) == arrived:
                await asyncio.sleep(0.01)
        assert written[arrived:] == [b'{"n":%d}' % arrived]
    finally:
        reading.cancel()
