"""The commit's table half: changelog records coalesced per key, RocksDB written only after.

Real RocksDB tables in a temporary folder; the worker's transaction is replaced by a recorder
of what would be sent (the Kafka half is tested against the broker in tests/integration).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from execdist.runtime.commit import Committer
from execdist.tables.declarations import ORDER_STATE, TIMERS, table_specs
from execdist.tables.store import PartitionedState, RocksTables

CHANGELOG = "commit-test-tables-changelog"
"""Every table's changelog; a record's key is the table's tag, then the table's key."""


class Recorder:
    """Stands in for the worker's transaction: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, *, partition: int | None = None
    ) -> None:
        self.sent.append((topic, key, value, partition))


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksTables]:
    tables = RocksTables(tmp_path, table_specs("commit-test"), 8 * 1024 * 1024)
    for name in (ORDER_STATE, TIMERS):
        for partition in (0, 1):
            tables.open(name, partition, fresh=True)
    yield tables
    tables.close_all()


def test_a_key_written_many_times_between_commits_is_one_changelog_record(rocks) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    timers = PartitionedState(rocks, rocks.specs[TIMERS])
    recorder = Recorder()
    committer = Committer(recorder, [states, timers])  # type: ignore[arg-type]
    for fill in range(1, 5):
        states.put(0, b"ORD-1", b"fills=%d" % fill)
    states.put(1, b"ORD-2", b"fills=1")
    timers.put(0, b"due:ORD-1", b"10:00")
    timers.delete(0, b"due:ORD-1")

    assert committer.send_changelogs() == 3
    assert sorted(recorder.sent, key=str) == sorted(
        [
            (CHANGELOG, b"oORD-1", b"fills=4", 0),
            (CHANGELOG, b"oORD-2", b"fills=1", 1),
            (CHANGELOG, b"tdue:ORD-1", None, 0),
        ],
        key=str,
    )
    assert states.get(0, b"ORD-1") == b"fills=4", "the transaction reads its own writes"
    assert rocks.db(ORDER_STATE, 0).get(b"ORD-1") is None, "nothing in RocksDB before the commit"

    assert committer.apply() == 3, "one write per key"
    assert bytes(rocks.db(ORDER_STATE, 0)[b"ORD-1"]) == b"fills=4"
    assert bytes(rocks.db(ORDER_STATE, 1)[b"ORD-2"]) == b"fills=1"
    assert rocks.db(TIMERS, 0).get(b"due:ORD-1") is None
    assert list(states.pending()) == [], "a commit starts the next batch empty"


def test_an_abandoned_transaction_leaves_rocksdb_as_committed(rocks) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    committer = Committer(Recorder(), [states])  # type: ignore[arg-type]
    states.put(0, b"ORD-1", b"committed")
    committer.send_changelogs()
    committer.apply()
    states.put(0, b"ORD-1", b"uncommitted")
    states.put(1, b"ORD-2", b"uncommitted")

    committer.abandon(1)
    assert states.get(1, b"ORD-2") is None, "a partition that left takes its writes along"
    assert states.get(0, b"ORD-1") == b"uncommitted"
    committer.abandon()
    assert states.get(0, b"ORD-1") == b"committed"
    assert list(states.pending()) == []


class Counted:
    """An encoder that counts its calls, standing in for a state's JSON encoding: called
    itself, or through its ``to_json`` method, as the join stores an order's state."""

    def __init__(self, value: bytes) -> None:
        self.value = value
        self.calls = 0

    def to_json(self) -> bytes:
        self.calls += 1
        return self.value

    __call__ = to_json


def test_a_value_put_to_be_encoded_later_is_encoded_once_at_the_commit(rocks) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    recorder = Recorder()
    committer = Committer(recorder, [states])  # type: ignore[arg-type]
    encoders = [Counted(b"v%d" % n) for n in range(4)]
    for encoder in encoders:
        states.put_encoded_later(0, b"ORD-1", encoder)
    assert [e.calls for e in encoders] == [0, 0, 0, 0]  # nothing encoded while processing

    committer.send_changelogs()
    assert recorder.sent == [(CHANGELOG, b"oORD-1", b"v3", 0)]
    encoders[3].value = b"changed after it was sent"
    committer.apply()
    assert [e.calls for e in encoders] == [0, 0, 0, 1]
    assert bytes(rocks.db(ORDER_STATE, 0)[b"ORD-1"]) == b"v3"  # what was sent, not later


def test_a_value_put_again_by_the_same_objects_method_is_kept_and_encoded_as_last_changed(
    rocks,
) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    held = Counted(b"fills=1")
    states.put_encoded_later(0, b"ORD-1", held.to_json)
    held.value = b"fills=2"
    states.put_encoded_later(0, b"ORD-1", held.to_json)  # an equal method, not the same object
    assert list(states.pending()) == [(0, b"ORD-1", b"fills=2")]
    assert held.calls == 1
    states.committed()

    other = Counted(b"another state")
    states.put_encoded_later(0, b"ORD-1", held.to_json)
    states.put_encoded_later(0, b"ORD-1", other.to_json)  # another object's method replaces it
    assert list(states.pending()) == [(0, b"ORD-1", b"another state")]
    assert (held.calls, other.calls) == (1, 1)


def test_reading_a_value_put_to_be_encoded_later_encodes_it_once(rocks) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    encoder = Counted(b"state")
    states.put_encoded_later(1, b"ORD-2", encoder)
    assert states.get(1, b"ORD-2") == b"state"
    assert states.get(1, b"ORD-2") == b"state"
    assert list(states.pending()) == [(1, b"ORD-2", b"state")]
    assert encoder.calls == 1


def test_the_next_batch_writes_apart_while_the_previous_one_commits(rocks) -> None:
    """While a commit is in flight the next batch reads the committing writes but writes to a
    generation of its own; the commit applies only its own writes to RocksDB."""
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    recorder = Recorder()
    committer = Committer(recorder, [states])  # type: ignore[arg-type]
    states.put(0, b"ORD-1", b"fills=1")
    committer.send_changelogs()  # the commit of batch 1 starts

    assert states.get(0, b"ORD-1") == b"fills=1"  # batch 2 sees batch 1's writes
    states.put(0, b"ORD-1", b"fills=2")
    states.put(0, b"ORD-9", b"new")
    assert states.get(0, b"ORD-1") == b"fills=2"

    committer.apply()  # batch 1 committed
    db = rocks.db(ORDER_STATE, 0)
    assert bytes(db[b"ORD-1"]) == b"fills=1" and db.get(b"ORD-9") is None
    assert states.get(0, b"ORD-1") == b"fills=2"

    sent = len(recorder.sent)
    committer.send_changelogs()
    assert sorted(recorder.sent[sent:]) == [
        (CHANGELOG, b"oORD-1", b"fills=2", 0),
        (CHANGELOG, b"oORD-9", b"new", 0),
    ]
    committer.apply()
    assert bytes(db[b"ORD-1"]) == b"fills=2" and bytes(db[b"ORD-9"]) == b"new"


def test_a_failed_commit_drops_the_batch_built_on_it(rocks) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    committer = Committer(Recorder(), [states])  # type: ignore[arg-type]
    states.put(0, b"ORD-1", b"committed")
    committer.send_changelogs()
    committer.apply()
    states.put(0, b"ORD-1", b"batch 1")
    committer.send_changelogs()  # batch 1 commits, and fails
    states.put(0, b"ORD-1", b"batch 2")
    committer.abandon()
    assert states.get(0, b"ORD-1") == b"committed"
    assert committer.send_changelogs() == 0  # nothing left of either batch


def test_a_second_commit_cannot_start_before_the_first_has_finished(rocks) -> None:
    states = PartitionedState(rocks, rocks.specs[ORDER_STATE])
    committer = Committer(Recorder(), [states])  # type: ignore[arg-type]
    states.put(0, b"ORD-1", b"a")
    committer.send_changelogs()
    with pytest.raises(RuntimeError, match="previous commit"):
        committer.send_changelogs()
