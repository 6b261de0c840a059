"""sub_seq: the number written into a subscriber record, and who numbers it when.

Real RocksDB tables in a temporary folder; the worker's transaction is replaced by a recorder of
what would be sent, and the route topic by handing the recorded route records back to the
sequencer (the whole path runs against the broker in tests/integration/test_sub_seq.py).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import fastavro
import orjson
import pytest

from execdist.agents.sequencing import SubscriberSequencer, pack_routed, unpack_routed
from execdist.codecs.framing import read_header
from execdist.codecs.output import SUB_SEQ_HEADER, encode_avro, with_sub_seq
from execdist.codecs.schemas import parsed_schema
from execdist.domain.routing import SubscriptionIndex
from execdist.runtime.records import InputRecord
from execdist.tables.declarations import SUB_SEQ, table_specs
from execdist.tables.store import PartitionedState, RocksTables
from execdist.topics import SUBSCRIBER_ROUTE, key_partition
from tests.unit.domain.test_subscriptions import make_confirmation, make_subscription

PARTITIONS = 4


class Recorder:
    """Stands in for the worker's transaction: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int | None]]
        self.sent = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        assert value is not None
        self.sent.append((topic, key, value, headers, partition))

    def take(
        self,
    ) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int | None]]:
        sent, self.sent = self.sent, []
        return sent


async def _no_set_aside(record: InputRecord, error: str) -> None:
    raise AssertionError(f"nothing should be set aside: {error}")


def _id_in(partition: int) -> str:
    """A subscription id whose route partition is ``partition``."""
    return next(
        f"sub-{n}"
        for n in range(10_000)
        if key_partition(f"sub-{n}".encode(), PARTITIONS) == partition
    )


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksTables]:
    tables = RocksTables(tmp_path, table_specs("seq-test"), 8 * 1024 * 1024)
    tables.open(SUB_SEQ, 0, fresh=True)  # this worker owns route partition 0 only
    yield tables
    tables.close_all()


@pytest.fixture
def setup(rocks: RocksTables) -> tuple[SubscriberSequencer, PartitionedState, Recorder, str, str]:
    index = SubscriptionIndex()
    ours, theirs = _id_in(0), _id_in(1)
    for subscription_id in (ours, theirs):
        index.upsert(make_subscription(subscription_id))
    counters = PartitionedState(rocks, rocks.specs[SUB_SEQ])
    out = Recorder()
    sequencer = SubscriberSequencer(counters, out, index, PARTITIONS, _no_set_aside)
    return sequencer, counters, out, ours, theirs


def _routed_back(
    sent: tuple[str, bytes | None, bytes, object, int | None], offset: int
) -> InputRecord:
    topic, key, value, _, partition = sent
    assert topic == SUBSCRIBER_ROUTE and partition is not None
    return InputRecord(topic, partition, offset, key, value, None)


def _numbered(
    sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int | None]],
) -> list[tuple[bytes | None, int, int]]:
    """(key, sub_seq in the value, sub_seq in the header) of each subscriber record sent."""
    out = []
    for topic, key, value, headers, _ in sent:
        assert topic.startswith("execdist.sub.")
        assert headers is not None
        out.append((key, orjson.loads(value)["sub_seq"], int(dict(headers)[SUB_SEQ_HEADER])))
    return out


def test_json_records_get_sub_seq_as_their_last_field() -> None:
    value = orjson.dumps({"order_id": "ORD-1", "last_qty": "100"})
    numbered = with_sub_seq(value, 42)
    assert list(orjson.loads(numbered).items()) == [
        ("order_id", "ORD-1"),
        ("last_qty", "100"),
        ("sub_seq", 42),
    ]
    assert orjson.loads(with_sub_seq(b"{}", 7)) == {"sub_seq": 7}


@pytest.mark.parametrize("sub_seq", [1, 63, 64, 127, 128, 300, 2**31, 2**53 + 1])
def test_avro_records_get_sub_seq_readable_with_the_evolved_schema(sub_seq: int) -> None:
    body = make_confirmation().to_dict()
    value = encode_avro(11, "confirmation", body)
    numbered = with_sub_seq(value, sub_seq)
    assert read_header(numbered) == 11
    payload = numbered[5:]
    decoded = fastavro.schemaless_reader(io.BytesIO(payload), parsed_schema("confirmation"))
    assert decoded["sub_seq"] == sub_seq
    assert decoded["exec_id"] == body["exec_id"]


def test_a_routed_record_keeps_its_parts() -> None:
    packed = pack_routed(b"w1:9", "execdist.sub.s-1", b"ORD-1", b'{"a":1}')
    assert unpack_routed(packed) == (b"w1:9", "execdist.sub.s-1", b"ORD-1", b'{"a":1}')
    assert unpack_routed(pack_routed(b"", "t", b"", b"")) == (b"", "t", b"", b"")


def test_a_subscription_numbered_elsewhere_is_routed_to_its_partition(setup) -> None:
    sequencer, _, out, _, theirs = setup
    sequencer.deliver(theirs, f"execdist.sub.{theirs}", b"ORD-1", b'{"n":1}')
    ((topic, key, value, headers, partition),) = out.take()
    assert (topic, key, partition, headers) == (SUBSCRIBER_ROUTE, theirs.encode(), 1, None)
    assert unpack_routed(value) == (b"", f"execdist.sub.{theirs}", b"ORD-1", b'{"n":1}'), (
        "no token: this worker does not wait for it"
    )


async def test_own_partition_is_numbered_at_once_only_after_reading_back_what_it_routed(
    setup,
) -> None:
    sequencer, _, out, ours, _ = setup
    topic = f"execdist.sub.{ours}"
    # just assigned: the first records take the route topic, behind any older ones
    sequencer.deliver(ours, topic, b"ORD-1", b'{"n":1}')
    sequencer.deliver(ours, topic, b"ORD-1", b'{"n":2}')
    first, second = out.take()
    assert first[0] == second[0] == SUBSCRIBER_ROUTE

    await sequencer.process(_routed_back(first, 10))
    assert _numbered(out.take()) == [(b"ORD-1", 1, 1)]
    # not local yet: a third record would otherwise overtake the second
    sequencer.deliver(ours, topic, b"ORD-1", b'{"n":3}')
    (third,) = out.take()
    assert third[0] == SUBSCRIBER_ROUTE

    await sequencer.process(_routed_back(second, 11))
    await sequencer.process(_routed_back(third, 12))
    assert _numbered(out.take()) == [(b"ORD-1", 2, 2), (b"ORD-1", 3, 3)]
    # the last record it routed there is read back: numbered at once from now on
    sequencer.deliver(ours, topic, b"ORD-1", b'{"n":4}')
    ((sent_topic, key, value, _, _),) = sent = out.take()
    assert sent_topic == topic and key == b"ORD-1"
    assert _numbered(sent) == [(b"ORD-1", 4, 4)]
    assert orjson.loads(value) == {"n": 4, "sub_seq": 4}


async def test_numbers_continue_from_the_table_after_a_rollback(setup) -> None:
    sequencer, counters, out, ours, _ = setup
    topic = f"execdist.sub.{ours}"
    sequencer.deliver(ours, topic, b"ORD-1", b"{}")
    await sequencer.process(_routed_back(out.take()[0], 0))
    sequencer.deliver(ours, topic, b"ORD-1", b"{}")
    assert [seq for _, seq, _ in _numbered(out.take())] == [1, 2]
    counters.pending()
    counters.committed()  # 1 and 2 commit

    sequencer.deliver(ours, topic, b"ORD-1", b"{}")  # 3, then rolled back
    out.take()
    counters.aborted(0)
    sequencer.release(0)

    sequencer.deliver(ours, topic, b"ORD-1", b"{}")
    (routed,) = out.take()
    assert routed[0] == SUBSCRIBER_ROUTE, "after a rollback the partition is not local at once"
    await sequencer.process(_routed_back(routed, 1))
    assert [seq for _, seq, _ in _numbered(out.take())] == [3], "3 again: it never committed"
    assert sequencer.last_sub_seq(ours) == 2, "the committed number"


async def test_a_record_routed_to_a_deleted_subscription_is_dropped(setup) -> None:
    sequencer, _, out, _, _ = setup
    routed = InputRecord(
        SUBSCRIBER_ROUTE,
        0,
        5,
        b"gone-sub",
        pack_routed(b"", "execdist.sub.gone-sub", b"K", b"{}"),
        None,
    )
    await sequencer.process(routed)
    assert out.take() == []


async def test_under_a_steady_flow_the_partition_turns_local_with_its_first_record_back(
    setup,
) -> None:
    """A worker with a backlog routes a record in every batch before it reads back the ones
    routed earlier: the partition must not wait for a moment with nothing on the way."""
    sequencer, _, out, ours, _ = setup
    topic = f"execdist.sub.{ours}"
    sequencer.deliver(ours, topic, b"ORD-1", b'{"n":1}')
    sequencer.deliver(ours, topic, b"ORD-2", b'{"n":2}')
    first, second = out.take()
    assert first[0] == second[0] == SUBSCRIBER_ROUTE

    await sequencer.process(_routed_back(first, 0))  # everything before it has been read
    assert _numbered(out.take()) == [(b"ORD-1", 1, 1)]
    # ORD-2 still has a record on the way: its next one follows it through the route topic
    sequencer.deliver(ours, topic, b"ORD-2", b'{"n":3}')
    (third,) = out.take()
    assert third[0] == SUBSCRIBER_ROUTE
    # ORD-1 and ORD-3 have nothing on the way: numbered at once, while ORD-2's are unread
    sequencer.deliver(ours, topic, b"ORD-1", b'{"n":4}')
    sequencer.deliver(ours, topic, b"ORD-3", b'{"n":5}')
    assert _numbered(out.take()) == [(b"ORD-1", 2, 2), (b"ORD-3", 3, 3)]

    await sequencer.process(_routed_back(second, 1))
    await sequencer.process(_routed_back(third, 2))
    assert _numbered(out.take()) == [(b"ORD-2", 4, 4), (b"ORD-2", 5, 5)]
    sequencer.deliver(ours, topic, b"ORD-2", b'{"n":6}')
    assert _numbered(out.take()) == [(b"ORD-2", 6, 6)], "nothing of ORD-2 on the way any more"


async def test_a_record_routed_before_a_release_does_not_make_the_partition_local(setup) -> None:
    sequencer, _, out, ours, _ = setup
    topic = f"execdist.sub.{ours}"
    sequencer.deliver(ours, topic, b"ORD-1", b"{}")
    (before,) = out.take()
    sequencer.release(0)  # a rollback: what comes back from before proves nothing
    sequencer.deliver(ours, topic, b"ORD-2", b"{}")
    (after,) = out.take()

    await sequencer.process(_routed_back(before, 0))
    out.take()
    sequencer.deliver(ours, topic, b"ORD-3", b"{}")
    (routed,) = out.take()
    assert routed[0] == SUBSCRIBER_ROUTE, "not local: the record routed since is unread"

    await sequencer.process(_routed_back(after, 1))
    await sequencer.process(_routed_back(routed, 2))
    out.take()
    sequencer.deliver(ours, topic, b"ORD-4", b"{}")
    ((sent_topic, *_),) = out.take()
    assert sent_topic == topic
