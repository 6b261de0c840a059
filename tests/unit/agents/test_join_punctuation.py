"""The join's punctuation (its timeouts and the expiry sweep) over a partition's RocksDB tables,
with outputs captured in memory.

The tables are real RocksDB databases in a temporary folder; what the join would send in its
partition's transaction is recorded instead of produced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from execdist import topics
from execdist.agents.join import SWEEP_BATCH, JoinProcessor
from execdist.codecs.input import InputDecoder
from execdist.domain import OrderState, apply_execution
from execdist.metrics import Metrics
from execdist.runtime.records import InputRecord
from execdist.runtime.topology import PunctuationContext
from execdist.settings import Settings
from execdist.tables.declarations import (
    HISTORY,
    ORDER_STATE,
    TIMERS,
    history_key,
    history_prefix,
    table_specs,
)
from execdist.tables.store import PartitionedState, RocksTables
from tests.unit.domain.fixtures import T0, execution_record, order_record, trade

RETENTION = timedelta(minutes=10)


class Recorder:
    """Stands in for a partition's transaction: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self.headers: list[dict[str, bytes]] = []

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        **_: object,
    ) -> None:
        self.sent.append((topic, key, value))
        self.headers.append(dict(headers or []))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


Parts = tuple[JoinProcessor, PartitionedState, PartitionedState, Clock, Recorder]
SETTINGS = Settings(
    app_id="sweep-test",
    order_retention=RETENTION,
    orphan_timeout=timedelta(seconds=30),
    gap_timeout=timedelta(seconds=10),
)
READ_TO_END = PunctuationContext(0, {topics.ORDERS: 0.0, topics.EXECUTIONS: 0.0})


@contextmanager
def join_with_tables(
    tmp_path: Path, *, partition: int = 0, decoder: object | None = None
) -> Iterator[Parts]:
    """A join over real RocksDB tables of one partition, its outputs recorded, its clock set
    by the test; ``decoder`` reads what the typed JSON path does not take."""
    rocks = RocksTables(tmp_path, table_specs(SETTINGS.app_id), 8 * 1024 * 1024)
    recorder = Recorder()
    tables = {
        name: PartitionedState(rocks, rocks.specs[name]) for name in (ORDER_STATE, TIMERS, HISTORY)
    }
    for name in tables:
        rocks.open(name, partition, fresh=True)
    clock = Clock()
    join = JoinProcessor(
        settings=SETTINGS,
        states=tables[ORDER_STATE],
        timers=tables[TIMERS],
        history=tables[HISTORY],
        out=recorder,
        decoder=InputDecoder(None) if decoder is None else decoder,  # type: ignore[arg-type]
        metrics=Metrics(),
        clock=clock,
    )
    yield join, tables[ORDER_STATE], tables[HISTORY], clock, recorder
    rocks.close_all()


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    with join_with_tables(tmp_path) as made:
        yield made


async def store_orders(
    states: PartitionedState, history: PartitionedState, ids: list[str], at: datetime = T0
) -> None:
    """Orders last active ``at``, each with one confirmation in the history, committed."""
    for order_id in ids:
        state = OrderState.new(order_id, at)
        states.put(0, order_id.encode(), orjson.dumps(state.to_dict()))
        history.put(0, history_key(order_id, 1), b"{}")
    states.committed()
    history.committed()


def keys(table: PartitionedState) -> list[bytes]:
    return [key for key, _ in table.items_after(0, None, 1_000_000)]


async def tick(join: JoinProcessor, *tables: PartitionedState) -> None:
    await join.punctuate(PunctuationContext(0))
    for table in tables:
        table.committed()


async def test_the_sweep_goes_round_the_partition_and_takes_the_history_along(parts) -> None:
    join, states, history, clock, _ = parts
    await store_orders(states, history, [f"OLD-{n:04d}" for n in range(120)])

    async def tick_with_new_orders(label: str) -> None:
        # new order ids sort after the old ones, as growing ids do
        await store_orders(states, history, [f"ZNEW-{label}-{n}" for n in range(5)], clock.now)
        clock.now += timedelta(seconds=1)
        await tick(join, states, history)

    for second in range(4):  # within the retention: the sweep passes every key, deletes none
        await tick_with_new_orders(f"A{second}")
    assert len(keys(states)) == 120 + 4 * 5
    clock.now = T0 + RETENTION + timedelta(seconds=10)  # the old orders and the A ones expire
    for second in range(5):
        await tick_with_new_orders(f"B{second}")
    assert [key for key in keys(states) if not key.startswith(b"ZNEW-B")] == []
    assert len(keys(states)) == 5 * 5, "the orders active within the retention stay"
    assert not any(key.startswith(history_prefix("OLD-0000")) for key in keys(history))
    assert len(keys(history)) == 5 * 5


async def test_the_sweep_examines_more_when_more_orders_are_created(parts) -> None:
    join, states, history, clock, _ = parts
    old = [f"OLD-{n:04d}" for n in range(1000)]
    await store_orders(states, history, old)
    clock.now = T0 + RETENTION
    await tick(join, states, history)
    assert len(keys(states)) == 1000 - SWEEP_BATCH
    # orders created through the join since the last tick widen the next sweep
    for n in range(200):
        join._load(0, f"NEW-{n}", clock.now)
    await tick(join, states, history)
    assert len(keys(states)) == 1000 - SWEEP_BATCH - (SWEEP_BATCH + 2 * 200)


async def test_the_sweep_keeps_states_still_holding_executions_and_those_it_cannot_read(
    parts,
) -> None:
    join, states, history, clock, _ = parts
    await store_orders(states, history, ["DONE"])
    waiting = OrderState.new("WAITING", T0)
    apply_execution(waiting, trade("EX-1", 1, "10", "187.45", order_id="WAITING"), {}, T0)
    assert waiting.held, "an execution before its order is held"
    states.put(0, b"WAITING", orjson.dumps(waiting.to_dict()))
    states.put(0, b"GARBLED", b"{not json")
    states.put(0, b"PARTIAL", orjson.dumps({"held": []}))  # no last_activity
    states.committed()
    clock.now = T0 + RETENTION + timedelta(seconds=1)
    await tick(join, states, history)
    assert keys(states) == [b"GARBLED", b"PARTIAL", b"WAITING"]
    assert keys(history) == []


async def test_the_sweep_judges_a_state_as_the_open_transaction_has_it(parts) -> None:
    join, states, history, clock, _ = parts
    await store_orders(states, history, ["DROPPED", "STALE", "TOUCHED"])
    clock.now = T0 + RETENTION + timedelta(seconds=1)
    # written in the open transaction, after the scan's committed values: TOUCHED is active
    # again (its committed state has expired), DROPPED is deleted already
    states.put(0, b"TOUCHED", orjson.dumps(OrderState.new("TOUCHED", clock.now).to_dict()))
    states.delete(0, b"DROPPED")
    await tick(join, states, history)
    assert keys(states) == [b"TOUCHED"]
    assert history_key("STALE", 1) not in keys(history)
    assert history_key("TOUCHED", 1) in keys(history)


# ---- timeouts: judged against how far the inputs are read -------------------------------------


def input_record(topic: str, offset: int, value: dict[str, object]) -> InputRecord:
    return InputRecord(topic, 0, offset, str(value["order_id"]).encode(), orjson.dumps(value), None)


def sent_to(recorder: Recorder, topic: str) -> list[tuple[str, bytes | None, bytes | None]]:
    return [sent for sent in recorder.sent if sent[0] == topic]


OVERDUE = timedelta(seconds=5)
"""How long past the timeout the tests below punctuate."""


@pytest.mark.parametrize(
    "behind",
    [
        {},
        {topics.EXECUTIONS: 0.0},
        {topics.ORDERS: 0.0},
        {topics.ORDERS: OVERDUE.total_seconds() + 1, topics.EXECUTIONS: 0.0},
    ],
    ids=[
        "nothing known",
        "orders not read yet",
        "executions not read yet",
        "orders further behind than the timeout is overdue",
    ],
)
async def test_an_orphan_is_rejected_only_once_its_inputs_are_read_past_its_timeout(
    parts, behind: dict[str, float]
) -> None:
    """While a worker catches up on a backlog, the order an execution waits for may be in it:
    an execution held past the orphan timeout then waits on, and is joined if its order comes;
    once the worker has read its inputs to their end, an order still missing never came."""
    join, *_, clock, recorder = parts
    await join.process(input_record(topics.EXECUTIONS, 0, execution_record()))
    clock.now = T0 + SETTINGS.orphan_timeout + OVERDUE

    await join.punctuate(PunctuationContext(0, behind))
    assert sent_to(recorder, topics.DLQ) == [], "its order may still be in the backlog"

    await join.punctuate(READ_TO_END)
    ((_, key, _),) = sent_to(recorder, topics.DLQ)
    assert key == execution_record()["order_id"].encode()  # type: ignore[union-attr]
    assert sent_to(recorder, topics.CONFIRMATIONS) == []


@pytest.mark.parametrize("read_back", [False, True], ids=["kept decoded", "read back"])
async def test_a_held_execution_refused_later_goes_to_the_dlq_with_its_original_bytes(
    parts, read_back: bool
) -> None:
    """Its origin is kept as it came (the bytes, not yet in base64) while the state stays
    decoded, and as its JSON form once the state is stored and read back."""
    join, states, _, clock, recorder = parts
    record = input_record(topics.EXECUTIONS, 7, execution_record())
    await join.process(record)
    if read_back:
        for table in (states, join._timers):
            table.committed()
        join.release(0)  # the decoded state is dropped (as after a rollback): read from RocksDB
    clock.now = T0 + SETTINGS.orphan_timeout + OVERDUE

    await join.punctuate(READ_TO_END)

    ((_, key, value),) = sent_to(recorder, topics.DLQ)
    assert (key, value) == (record.key, record.value)
    (headers,) = [
        h
        for (topic, *_), h in zip(recorder.sent, recorder.headers, strict=True)
        if topic == topics.DLQ
    ]
    assert headers["error.reason"] == b"ORPHAN_EXECUTION"
    assert (headers["error.topic"], headers["error.partition"], headers["error.offset"]) == (
        topics.EXECUTIONS.encode(),
        b"0",
        b"7",
    )


async def test_an_orphan_is_rejected_when_its_inputs_are_behind_by_less_than_it_is_overdue(
    parts,
) -> None:
    """Under a steady flow the worker is always a little behind: a timeout is judged that much
    late, not put off until the flow stops."""
    join, *_, clock, recorder = parts
    await join.process(input_record(topics.EXECUTIONS, 0, execution_record()))
    clock.now = T0 + SETTINGS.orphan_timeout + OVERDUE
    nearly = OVERDUE.total_seconds() - 0.5

    await join.punctuate(PunctuationContext(0, {topics.ORDERS: 0.3, topics.EXECUTIONS: nearly}))

    assert len(sent_to(recorder, topics.DLQ)) == 1


async def test_an_order_found_in_the_backlog_after_the_timeout_releases_its_execution(
    parts,
) -> None:
    join, *_, clock, recorder = parts
    await join.process(input_record(topics.EXECUTIONS, 0, execution_record()))
    clock.now = T0 + SETTINGS.orphan_timeout * 3
    await join.punctuate(PunctuationContext(0, {topics.ORDERS: 3600.0, topics.EXECUTIONS: 0.0}))

    await join.process(input_record(topics.ORDERS, 0, order_record()))
    await join.punctuate(READ_TO_END)

    assert sent_to(recorder, topics.DLQ) == []
    ((_, _, value),) = sent_to(recorder, topics.CONFIRMATIONS)
    assert orjson.loads(value or b"")["exec_id"] == execution_record()["exec_id"]


async def test_a_gap_is_jumped_only_once_the_executions_are_read_past_its_timeout(parts) -> None:
    """The missing seq may be further on in the executions' backlog."""
    join, *_, clock, recorder = parts
    await join.process(input_record(topics.ORDERS, 0, order_record()))
    await join.process(input_record(topics.EXECUTIONS, 0, execution_record(exec_id="EX-2", seq=2)))
    clock.now = T0 + SETTINGS.gap_timeout * 3  # 20 s overdue

    await join.punctuate(PunctuationContext(0, {topics.ORDERS: 0.0}))
    await join.punctuate(PunctuationContext(0, {topics.ORDERS: 0.0, topics.EXECUTIONS: 20.5}))
    assert sent_to(recorder, topics.CONFIRMATIONS) == []
    assert sent_to(recorder, topics.STATUS) == []

    await join.punctuate(PunctuationContext(0, {topics.ORDERS: 0.0, topics.EXECUTIONS: 19.5}))
    ((_, _, value),) = sent_to(recorder, topics.CONFIRMATIONS)
    confirmation = orjson.loads(value or b"")
    assert confirmation["seq"] == 2
    assert confirmation["confirmed_at"].startswith(clock.now.isoformat()[:19]), "applied now"
    (gap,) = [orjson.loads(v or b"") for _, _, v in sent_to(recorder, topics.STATUS)]
    assert gap["type"] == "SEQUENCE_GAP" and gap["details"]["missing_seqs"] == [1]


async def test_timeouts_long_overdue_are_logged_now_and_then_with_what_is_behind(
    parts, caplog: pytest.LogCaptureFixture
) -> None:
    join, *_, clock, _ = parts
    await join.process(input_record(topics.EXECUTIONS, 0, execution_record()))
    not_read = PunctuationContext(0, {topics.EXECUTIONS: 0.0})
    caplog.set_level(logging.INFO, logger="execdist.agents.join")

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "timeouts are overdue" in r.getMessage()]

    await join.punctuate(not_read)  # nothing is due yet
    clock.now = T0 + SETTINGS.orphan_timeout
    await join.punctuate(not_read)
    assert lines() == [], "due just now: the next tick may well fire it"
    clock.now += timedelta(seconds=5)
    await join.punctuate(not_read)
    clock.now += timedelta(seconds=59)
    await join.punctuate(not_read)  # within the minute: not again
    clock.now += timedelta(seconds=1)
    await join.punctuate(PunctuationContext(0, {topics.ORDERS: 0.0, topics.EXECUTIONS: 95.25}))

    first, second = lines()
    assert (
        "1 timeouts are overdue and wait until the worker has read its orders (not read yet)"
        in (first.getMessage())
    )
    assert "its executions (95.2 s behind)" in second.getMessage()
    assert first.partition == 0  # type: ignore[attr-defined]
